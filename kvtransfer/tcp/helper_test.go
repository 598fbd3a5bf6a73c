package tcp_test

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/kvtransfertest"
	"github.com/duet-llm/duet/kvtransfer/tcp"
)

// The failure tests kill real processes: the test binary runs itself as a
// helper (a receiver or a sender) selected by this variable.
const helperEnv = "KVTRANSFER_TEST_HELPER"

func helperMain() bool {
	role := os.Getenv(helperEnv)
	if role == "" {
		return false
	}
	var err error
	switch role {
	case "receiver":
		err = helperReceiver()
	case "sender":
		err = helperSender(os.Getenv("KVTRANSFER_TEST_DESC"))
	default:
		err = fmt.Errorf("unknown helper role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
	os.Exit(0)
	return true
}

// helperReceiver serves one reservation of 64 slots of 64 KiB, prints
// "DESC <hex>", then "OUTCOME <state>" when it ends, and runs until stdin
// closes.
func helperReceiver() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pool := kvtransfertest.NewPool(64, 64<<10, 64)
	recv := kvtransfer.NewReceiver(kvtransfer.ReceiverConfig{}, nil)
	pool.Region, _ = recv.RegisterRegion(pool.Mem)
	srv := tcp.NewServer(tcp.ServerConfig{Addr: "127.0.0.1:0", FrameTimeout: 300 * time.Millisecond}, recv, nil)
	errc := make(chan error, 1)
	go func() { errc <- srv.Run(ctx) }()
	<-srv.Ready()
	var slots []kvtransfer.Slot
	for i := range pool.Slots {
		slots = append(slots, pool.Slot(i))
	}
	res, err := recv.Reserve(slots, time.Minute)
	if err != nil {
		return err
	}
	d := res.Descriptor()
	b, _ := d.MarshalBinary()
	fmt.Printf("DESC %s\n", hex.EncodeToString(b))
	go func() {
		out, _ := res.Wait(ctx)
		fmt.Printf("OUTCOME %s\n", out.State)
	}()
	io.Copy(io.Discard, os.Stdin)
	cancel()
	return <-errc
}

// helperSender writes the reservation's slots over and over, printing
// "WRITING" after its first flush, until it is killed.
func helperSender(desc string) error {
	b, err := hex.DecodeString(desc)
	if err != nil {
		return err
	}
	var d kvtransfer.Descriptor
	if err := d.UnmarshalBinary(b); err != nil {
		return err
	}
	ctx := context.Background()
	tr := tcp.New(tcp.Config{Conns: 2}, nil)
	go tr.Run(ctx)
	s, err := tr.Open(ctx, &d)
	if err != nil {
		return err
	}
	buf := make([]byte, d.Slots[0].Length)
	for i := range buf {
		buf[i] = byte(i)
	}
	for round := 0; ; round++ {
		for i := range d.Slots {
			if err := s.Write(ctx, i, 0, buf); err != nil {
				return err
			}
		}
		if err := s.Flush(ctx); err != nil {
			return err
		}
		if round == 0 {
			fmt.Println("WRITING")
		}
		time.Sleep(time.Millisecond)
	}
}

// helper is a running helper process.
type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
}

func startHelper(t *testing.T, role string, env ...string) *helper {
	t.Helper()
	if testing.Short() {
		t.Skip("starts helper processes")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + role}, env...)...)
	cmd.Stderr = os.Stderr
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, stdin: stdin, lines: make(chan string, 16)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		stdin.Close()
		<-done
		cmd.Wait()
	})
	return h
}

// line waits for the next line starting with prefix and returns the rest.
func (h *helper) line(t *testing.T, prefix string, within time.Duration) string {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				t.Fatalf("helper exited before %q", prefix)
			}
			if rest, ok := strings.CutPrefix(l, prefix); ok {
				return strings.TrimSpace(rest)
			}
		case <-timer.C:
			t.Fatalf("no %q from the helper within %v", prefix, within)
		}
	}
}

func (h *helper) descriptor(t *testing.T) *kvtransfer.Descriptor {
	t.Helper()
	b, err := hex.DecodeString(h.line(t, "DESC ", 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var d kvtransfer.Descriptor
	if err := d.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	return &d
}
