// Package e2e tests duet end to end: real processes (router, prefill and
// decode nodes built from this checkout), a real etcd, real sockets and a
// real model. Nothing is faked.
package e2e

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/duet-llm/duet/engine/enginetest"
	"github.com/duet-llm/duet/tests/localcluster"
)

var (
	binDir string // the binaries under test
	model  string // stories260K
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, ok := enginetest.ModelsDir()
	if !ok {
		fmt.Println("e2e: shared models folder not found; skipping the end-to-end tests")
		return 0
	}
	model = filepath.Join(dir, enginetest.Stories260K)
	stories.path = model
	tmp, err := os.MkdirTemp("", "duet-e2e-")
	if err != nil {
		fmt.Println(err)
		return 1
	}
	defer os.RemoveAll(tmp)
	binDir = tmp
	cmd := exec.Command("go", "build", "-o", binDir+"/",
		"github.com/duet-llm/duet/router/cmd/duet-router",
		"github.com/duet-llm/duet/prefill-node/cmd/duet-prefill",
		"github.com/duet-llm/duet/decode-node/cmd/duet-decode",
		"github.com/duet-llm/duet/engine/cmd/duet-generate")
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Println("e2e: build:", err)
		return 1
	}
	return m.Run()
}

// logBuffer keeps the cluster's output for failure reports and log checks.
type logBuffer struct {
	mu    sync.Mutex
	lines []logLine
	buf   bytes.Buffer
}

type logLine struct {
	at   time.Time
	text string
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	for {
		i := bytes.IndexByte(l.buf.Bytes(), '\n')
		if i < 0 {
			break
		}
		l.lines = append(l.lines, logLine{time.Now(), string(l.buf.Next(i + 1))})
	}
	return len(p), nil
}

// since returns the lines logged after t that contain every substring.
func (l *logBuffer) since(t time.Time, subs ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for _, ln := range l.lines {
		if ln.at.Before(t) {
			continue
		}
		for _, s := range subs {
			if !strings.Contains(ln.text, s) {
				continue next
			}
		}
		out = append(out, ln.text)
	}
	return out
}

func (l *logBuffer) dump(t *testing.T) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := len(l.lines)
	start := max(0, n-200)
	for _, ln := range l.lines[start:] {
		t.Log(strings.TrimRight(ln.text, "\n"))
	}
}

// start starts a cluster for one test and stops it at the end, checking
// that it drains within its grace.
func start(t *testing.T, o localcluster.Options) (*localcluster.Cluster, *logBuffer) {
	t.Helper()
	logs := &logBuffer{}
	o.BinDir, o.Logs = binDir, logs
	if o.Model == "" {
		o.Model = model
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	c, err := localcluster.Start(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			logs.dump(t)
		}
	})
	if err := c.WaitReady(ctx); err != nil {
		logs.dump(t)
		t.Fatal(err)
	}
	return c, logs
}
