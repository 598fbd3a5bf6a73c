package dashboard

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/router/internal/api"
	"github.com/duet-llm/duet/router/internal/metrics"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func members() []cluster.NodeView {
	lease := clientv3.LeaseID(7)
	node := func(id string, role cluster.Role, total, free int) cluster.NodeView {
		return cluster.NodeView{Node: cluster.Node{ID: id, Role: role, TotalBlocks: total}, Load: cluster.Load{FreeBlocks: free},
			Lease: lease, Gossip: cluster.GossipAlive, Routable: true}
	}
	draining := node("decode-2", cluster.RoleDecode, 100, 100)
	draining.Draining, draining.Routable = true, false
	dead := node("decode-3", cluster.RoleDecode, 100, 0)
	dead.Gossip, dead.Routable = cluster.GossipDead, false
	return []cluster.NodeView{
		node("decode-1", cluster.RoleDecode, 100, 25), draining, dead,
		node("both-1", cluster.RoleBoth, 200, 200),
		node("prefill-1", cluster.RolePrefill, 50, 50),
		node("router-1", cluster.RoleRouter, 0, 0),
	}
}

func TestState(t *testing.T) {
	rec := metrics.NewRecorder(metrics.Config{})
	rec.Done(api.RequestStats{Endpoint: api.EndpointCompletions, Outcome: api.OutcomeOK, CompletionTokens: 1, TTFT: time.Millisecond, Duration: time.Millisecond})
	d := New(Config{RouterID: "router-1", Version: "v1"}, Sources{Members: members, Traffic: rec.Traffic,
		Load: func() (int, int) { return 2, 1 }})
	st := d.State()
	var order []string
	for _, n := range st.Nodes {
		order = append(order, n.ID+"/"+n.Status)
	}
	want := "router-1/routable prefill-1/routable decode-1/routable decode-2/draining decode-3/dead both-1/routable"
	if got := strings.Join(order, " "); got != want {
		t.Errorf("nodes %s\nwant %s", got, want)
	}
	// KV: the live decode-capable nodes (decode-1, decode-2, both-1), not the dead one.
	if st.KV.TotalBlocks != 400 || st.KV.FreeBlocks != 325 || st.KV.UsedRatio != 75.0/400 {
		t.Errorf("kv %+v", st.KV)
	}
	if st.Roles["decode"]["routable"] != 1 || st.Roles["decode"]["dead"] != 1 || st.Roles["decode"]["draining"] != 1 {
		t.Errorf("roles %v", st.Roles)
	}
	if st.Running != 2 || st.Queued != 1 || st.Traffic.Requests != 1 || st.Router != "router-1" {
		t.Errorf("state %+v", st)
	}
}

func TestHandler(t *testing.T) {
	d := New(Config{RouterID: "r"}, Sources{Members: members})
	srv := httptest.NewServer(d.Handler())
	defer srv.Close()
	defer http.DefaultClient.CloseIdleConnections()
	tests := []struct {
		method, path string
		status       int
		ctype        string
	}{
		{"GET", "/dashboard", 200, "text/html; charset=utf-8"},
		{"GET", "/dashboard/", 200, "text/html; charset=utf-8"},
		{"GET", "/dashboard/state", 200, "application/json"},
		{"GET", "/dashboard/other", 404, ""},
		{"POST", "/dashboard/state", 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			if tc.ctype != "" && resp.Header.Get("Content-Type") != tc.ctype {
				t.Errorf("content type %q", resp.Header.Get("Content-Type"))
			}
			if tc.path == "/dashboard/state" && tc.status == 200 {
				var st State
				if err := json.NewDecoder(resp.Body).Decode(&st); err != nil || len(st.Nodes) != 6 {
					t.Errorf("state: %v, %d nodes", err, len(st.Nodes))
				}
			}
		})
	}
	// The page loads nothing from elsewhere (clusters often have no internet).
	for _, s := range []string{"http://", "https://", "//cdn", "<link", "src="} {
		if strings.Contains(string(page), s) {
			t.Errorf("the page refers to %q", s)
		}
	}
}
