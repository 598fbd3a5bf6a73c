package dashboard

import (
	_ "embed"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/duet-llm/duet/cluster"
	"github.com/duet-llm/duet/router/internal/metrics"
)

//go:embed dashboard.html
var page []byte

// Sources are what the state is built from.
type Sources struct {
	// Members is the cluster as this router sees it (cluster.Directory's
	// Snapshot).
	Members func() []cluster.NodeView
	// Traffic is the recent traffic (metrics.Recorder's Traffic).
	Traffic func() metrics.Traffic
	// Load is the router's running and queued generations (api.API's
	// Load); may be nil.
	Load func() (running, queued int)
}

// Config describes the router on the page.
type Config struct {
	RouterID string
	Version  string
	// Refresh is how often the page polls the state (default 1 s).
	Refresh time.Duration
}

// Dashboard serves the page and its state.
type Dashboard struct {
	cfg Config
	src Sources
	now func() time.Time
}

// New returns a dashboard. It does no I/O.
func New(cfg Config, src Sources) *Dashboard {
	if cfg.Refresh <= 0 {
		cfg.Refresh = time.Second
	}
	return &Dashboard{cfg: cfg, src: src, now: time.Now}
}

// State is what GET /dashboard/state answers.
type State struct {
	Time      time.Time `json:"time"`
	Router    string    `json:"router"`
	Version   string    `json:"version"`
	RefreshMS int64     `json:"refresh_ms"`
	// Running and Queued are this router's generations now.
	Running int `json:"running"`
	Queued  int `json:"queued"`
	// Traffic is this router's recent traffic.
	Traffic metrics.Traffic `json:"traffic"`
	// KV sums the KV blocks of the decode-capable nodes that are alive
	// (routable or draining).
	KV KV `json:"kv"`
	// Roles counts the members by role and status.
	Roles map[string]map[string]int `json:"roles"`
	// Nodes lists every member: routers, prefill, decode and colocated
	// ("both") nodes, by role then id.
	Nodes []Node `json:"nodes"`
}

// KV is the pool-wide KV cache usage.
type KV struct {
	TotalBlocks int     `json:"total_blocks"`
	FreeBlocks  int     `json:"free_blocks"`
	UsedRatio   float64 `json:"used_ratio"`
}

// Node is one member on the page.
type Node struct {
	ID     string `json:"id"`
	Role   string `json:"role"`
	Status string `json:"status"` // routable, draining, dead (gossip), unleased
	Gossip string `json:"gossip"`

	GRPCAddr  string    `json:"grpc_addr,omitempty"`
	HTTPAddr  string    `json:"http_addr,omitempty"`
	Host      string    `json:"host,omitempty"`
	Zone      string    `json:"zone,omitempty"`
	Version   string    `json:"version,omitempty"`
	StartedAt time.Time `json:"started_at"`

	// Capacity and load, as the node last reported them.
	TotalBlocks         int      `json:"total_blocks"`
	FreeBlocks          int      `json:"free_blocks"`
	RunningSeqs         int      `json:"running_seqs"`
	QueuedPrefillTokens int      `json:"queued_prefill_tokens"`
	RDMADevices         []string `json:"rdma_devices,omitempty"`
}

// roleOrder sorts the members as the page shows them.
var roleOrder = map[cluster.Role]int{cluster.RoleRouter: 0, cluster.RolePrefill: 1, cluster.RoleDecode: 2, cluster.RoleBoth: 3}

// State builds the current state.
func (d *Dashboard) State() State {
	st := State{Time: d.now().UTC(), Router: d.cfg.RouterID, Version: d.cfg.Version, RefreshMS: d.cfg.Refresh.Milliseconds(),
		Roles: map[string]map[string]int{}}
	if d.src.Traffic != nil {
		st.Traffic = d.src.Traffic()
	}
	if d.src.Load != nil {
		st.Running, st.Queued = d.src.Load()
	}
	var members []cluster.NodeView
	if d.src.Members != nil {
		members = d.src.Members()
	}
	slices.SortFunc(members, func(a, b cluster.NodeView) int {
		if c := roleOrder[a.Role] - roleOrder[b.Role]; c != 0 {
			return c
		}
		if a.ID < b.ID {
			return -1
		}
		if a.ID > b.ID {
			return 1
		}
		return 0
	})
	st.Nodes = make([]Node, 0, len(members))
	for _, v := range members {
		n := Node{ID: v.ID, Role: string(v.Role), Status: status(v), Gossip: v.Gossip.String(),
			GRPCAddr: v.GRPCAddr, HTTPAddr: v.HTTPAddr, Host: v.Host, Zone: v.Zone, Version: v.Version, StartedAt: v.StartedAt,
			TotalBlocks: v.TotalBlocks, FreeBlocks: v.Load.FreeBlocks, RunningSeqs: v.Load.RunningSeqs,
			QueuedPrefillTokens: v.Load.QueuedPrefillTokens, RDMADevices: v.RDMADevices}
		st.Nodes = append(st.Nodes, n)
		if st.Roles[n.Role] == nil {
			st.Roles[n.Role] = map[string]int{}
		}
		st.Roles[n.Role][n.Status]++
		if (v.Role == cluster.RoleDecode || v.Role == cluster.RoleBoth) && (n.Status == "routable" || n.Status == "draining") {
			st.KV.TotalBlocks += v.TotalBlocks
			st.KV.FreeBlocks += min(v.Load.FreeBlocks, v.TotalBlocks)
		}
	}
	if st.KV.TotalBlocks > 0 {
		st.KV.UsedRatio = float64(st.KV.TotalBlocks-st.KV.FreeBlocks) / float64(st.KV.TotalBlocks)
	}
	return st
}

// status is a member's state in the words of duet_cluster_members.
func status(v cluster.NodeView) string {
	switch {
	case v.Lease == 0:
		return "unleased"
	case v.Gossip == cluster.GossipDead:
		return "dead"
	case v.Draining:
		return "draining"
	}
	return "routable"
}

// Handler serves GET /dashboard (and /dashboard/) and GET /dashboard/state.
func (d *Dashboard) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		switch r.URL.Path {
		case "/dashboard", "/dashboard/":
			h.Set("Content-Type", "text/html; charset=utf-8")
			h.Set("Content-Length", strconv.Itoa(len(page)))
			// The page loads nothing from elsewhere.
			h.Set("Content-Security-Policy", "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'")
			_, _ = w.Write(page)
		case "/dashboard/state":
			b, err := json.Marshal(d.State())
			if err != nil { // only our own types: a bug
				http.Error(w, "encoding the state failed", http.StatusInternalServerError)
				return
			}
			h.Set("Content-Type", "application/json")
			_, _ = w.Write(append(b, '\n'))
		default:
			http.NotFound(w, r)
		}
	})
}
