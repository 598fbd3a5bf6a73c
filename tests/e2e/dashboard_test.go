package e2e

import (
	"context"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/duet-llm/duet/tests/localcluster"
)

// chromium finds Debian's chromium (`make deps` installs it).
func chromium() (string, bool) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, true
		}
	}
	return "", false
}

// checkDashboard opens /dashboard in headless Chromium and checks that it
// lists every running member and that its request count follows new
// requests.
func checkDashboard(t *testing.T, ctx context.Context, c *localcluster.Cluster) {
	path, ok := chromium()
	if !ok {
		t.Skip("SKIPPING THE DASHBOARD TEST: no chromium in PATH; `make deps` installs Debian's chromium package")
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(path),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	defer cancelBrowser()
	bctx, cancel := context.WithTimeout(bctx, 60*time.Second)
	defer cancel()

	if err := chromedp.Do(bctx,
		chromedp.Navigate(c.Endpoint+"/dashboard"),
		chromedp.WaitVisible(chromedp.CSS(`tr.node[data-node-id="decode-1"]`)),
	); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	ids, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("tr.node")).map(r => r.dataset.nodeId + "/" + r.dataset.role)`))
	if err != nil {
		t.Fatal(err)
	}
	conn, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("conn")))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, p := range append([]*localcluster.Proc{c.Router}, c.Nodes()...) {
		if !p.Exited() {
			want = append(want, p.Name+"/"+string(p.Role))
		}
	}
	slices.Sort(ids)
	slices.Sort(want)
	if !slices.Equal(ids, want) {
		t.Errorf("dashboard lists %v, want the running members %v", ids, want)
	}
	if !strings.HasPrefix(conn, "live") {
		t.Errorf("connection status %q", conn)
	}

	// It updates: the request count follows new requests within a few
	// polls, without reloading the page.
	count := func() (int, error) {
		s, err := chromedp.Run(bctx, chromedp.Text(chromedp.ID("requests-total")))
		if err != nil {
			return 0, err
		}
		return strconv.Atoi(strings.TrimSpace(s))
	}
	before, err := count()
	if err != nil {
		t.Fatal(err)
	}
	const more = 3
	for range more {
		code, _, err := complete(ctx, c.Endpoint, greedyBody("Once upon a time", 4))
		if err != nil || code != http.StatusOK {
			t.Fatalf("request: %d %v", code, err)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		n, err := count()
		if err != nil {
			t.Fatal(err)
		}
		if n >= before+more {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("dashboard shows %d requests, want at least %d after %d more", n, before+more, more)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ttft, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS(`#latency tr[data-series="ttft"] td:nth-child(4)`)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(ttft, "s") {
		t.Errorf("TTFT p99 cell %q, want a duration", ttft)
	}
	t.Logf("dashboard: %d members, TTFT p99 %s", len(ids), ttft)
}
