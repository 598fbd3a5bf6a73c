package cluster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Role is what a member does in the cluster.
type Role string

// The roles. RoleBoth serves prefill and decode in one process; RoleRouter registers so that
// gossip can find routers, and routing ignores it.
const (
	RolePrefill Role = "prefill"
	RoleDecode  Role = "decode"
	RoleBoth    Role = "both"
	RoleRouter  Role = "router"
)

// Roles lists every valid role, in key-layout order.
var Roles = []Role{RolePrefill, RoleDecode, RoleBoth, RoleRouter}

// ParseRole turns a flag or key segment into a Role.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !r.Valid() {
		return "", fmt.Errorf("%w: %q (want prefill, decode, both or router)", ErrBadRole, s)
	}
	return r, nil
}

// Valid reports whether r is one of the four roles.
func (r Role) Valid() bool {
	switch r {
	case RolePrefill, RoleDecode, RoleBoth, RoleRouter:
		return true
	}
	return false
}

// Serves reports whether a member with role r can take work of role want: a "both" member
// serves prefill and decode (and "both"); every other role serves only itself.
func (r Role) Serves(want Role) bool {
	if r == want {
		return true
	}
	return r == RoleBoth && (want == RolePrefill || want == RoleDecode)
}

// KVLayout describes how a node lays out its paged KV cache; prefill and decode nodes must
// agree on it for KV blocks to move between them byte for byte.
type KVLayout struct {
	DType       string `json:"dtype,omitempty"`
	BlockTokens int    `json:"block_tokens,omitempty"`
	Layers      int    `json:"layers,omitempty"`
	KVHeads     int    `json:"kv_heads,omitempty"`
	HeadDim     int    `json:"head_dim,omitempty"`
	Kernel      string `json:"kernel,omitempty"`
}

// Node is the static part of a member's descriptor: what it is and where to reach it. It is
// set once at start; only the Registrar fills GossipAddr (with the port actually bound).
type Node struct {
	ID          string    `json:"id"`
	Role        Role      `json:"role"`
	GRPCAddr    string    `json:"grpc_addr,omitempty"`
	KVAddr      string    `json:"kv_addr,omitempty"`
	GossipAddr  string    `json:"gossip_addr,omitempty"`
	HTTPAddr    string    `json:"http_addr,omitempty"`
	ModelID     string    `json:"model_id,omitempty"`
	KVLayout    KVLayout  `json:"kv_layout"`
	TotalBlocks int       `json:"total_blocks"`
	Host        string    `json:"host,omitempty"`
	Zone        string    `json:"zone,omitempty"`
	RDMADevices []string  `json:"rdma_devices,omitempty"`
	Version     string    `json:"version,omitempty"`
	StartedAt   time.Time `json:"started_at"`
}

// Load is the changing part: capacity and queue figures, reported by the node through
// Registrar.UpdateLoad.
type Load struct {
	FreeBlocks          int `json:"free_blocks"`
	RunningSeqs         int `json:"running_seqs"`
	QueuedPrefillTokens int `json:"queued_prefill_tokens"`
	// Seq orders this node's dynamic state (load and draining flag) wherever it travels, in etcd
	// or by gossip: the higher one wins, so a stale update never overwrites a newer one. The
	// Registrar sets it; it starts at the process start time in microseconds since the Unix
	// epoch and grows by at least one per change, so a restarted node's updates outrank its
	// previous life's.
	Seq uint64 `json:"seq"`
}

// Descriptor is the JSON value stored at a member's key: the static Node, its draining flag and
// its latest load.
type Descriptor struct {
	// Schema is the descriptor format version; this package writes SchemaVersion.
	Schema int `json:"schema"`
	Node
	Draining bool `json:"draining"`
	Load     Load `json:"load"`
}

// SchemaVersion is the descriptor format this package writes. Readers accept any version from 1
// on and ignore fields they do not know.
const SchemaVersion = 1

// Limits on what this package accepts from outside (etcd values, gossip messages).
const (
	maxIDLen          = 128
	maxDescriptorSize = 64 << 10
	maxStringField    = 1024
	maxRDMADevices    = 64
)

// ValidateID checks that id can be one path segment of an etcd key and a gossip member name:
// 1 to 128 characters of [A-Za-z0-9._-], not "." or "..".
func ValidateID(id string) error {
	if id == "" || len(id) > maxIDLen {
		return fmt.Errorf("%w: length %d (want 1..%d)", ErrBadID, len(id), maxIDLen)
	}
	if id == "." || id == ".." {
		return fmt.Errorf("%w: %q", ErrBadID, id)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return fmt.Errorf("%w: %q has %q at %d", ErrBadID, id, c, i)
		}
	}
	return nil
}

// Validate checks the static descriptor a node registers with.
func (n Node) Validate() error {
	if err := ValidateID(n.ID); err != nil {
		return err
	}
	if !n.Role.Valid() {
		return fmt.Errorf("%w: %q", ErrBadRole, n.Role)
	}
	if n.TotalBlocks < 0 {
		return fmt.Errorf("%w: total_blocks %d < 0", ErrBadDescriptor, n.TotalBlocks)
	}
	l := n.KVLayout
	if l.BlockTokens < 0 || l.Layers < 0 || l.KVHeads < 0 || l.HeadDim < 0 {
		return fmt.Errorf("%w: negative kv_layout field", ErrBadDescriptor)
	}
	if len(n.RDMADevices) > maxRDMADevices {
		return fmt.Errorf("%w: %d rdma devices (max %d)", ErrBadDescriptor, len(n.RDMADevices), maxRDMADevices)
	}
	for _, s := range append([]string{n.GRPCAddr, n.KVAddr, n.GossipAddr, n.HTTPAddr, n.ModelID,
		n.Host, n.Zone, n.Version, l.DType, l.Kernel}, n.RDMADevices...) {
		if len(s) > maxStringField {
			return fmt.Errorf("%w: field longer than %d bytes", ErrBadDescriptor, maxStringField)
		}
	}
	return nil
}

// Validate checks load figures received from outside.
func (l Load) Validate() error {
	if l.FreeBlocks < 0 || l.RunningSeqs < 0 || l.QueuedPrefillTokens < 0 {
		return fmt.Errorf("%w: negative load figure", ErrBadDescriptor)
	}
	return nil
}

// Validate checks a whole descriptor.
func (d Descriptor) Validate() error {
	if d.Schema < 1 {
		return fmt.Errorf("%w: schema %d", ErrBadDescriptor, d.Schema)
	}
	if err := d.Node.Validate(); err != nil {
		return err
	}
	return d.Load.Validate()
}

// MarshalDescriptor encodes d as the JSON stored in etcd.
func MarshalDescriptor(d Descriptor) ([]byte, error) {
	if d.Schema == 0 {
		d.Schema = SchemaVersion
	}
	if err := d.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(d)
}

// UnmarshalDescriptor decodes and validates a descriptor read from etcd. It never panics on
// bad bytes; every failure wraps ErrBadDescriptor, ErrBadID or ErrBadRole.
func UnmarshalDescriptor(b []byte) (Descriptor, error) {
	var d Descriptor
	if len(b) > maxDescriptorSize {
		return d, fmt.Errorf("%w: %d bytes (max %d)", ErrBadDescriptor, len(b), maxDescriptorSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&d); err != nil {
		return Descriptor{}, fmt.Errorf("%w: %v", ErrBadDescriptor, err)
	}
	if dec.More() {
		return Descriptor{}, fmt.Errorf("%w: trailing data", ErrBadDescriptor)
	}
	if err := d.Validate(); err != nil {
		return Descriptor{}, err
	}
	return d, nil
}

// NodesPrefix is the etcd prefix under which every member of cluster registers.
func NodesPrefix(cluster string) string { return "/" + cluster + "/nodes/" }

// NodeKey is the etcd key of one member: /<cluster>/nodes/<role>/<id>.
func NodeKey(cluster string, role Role, id string) string {
	return NodesPrefix(cluster) + string(role) + "/" + id
}

// ParseNodeKey splits a key under NodesPrefix(cluster) into role and id.
func ParseNodeKey(cluster, key string) (Role, string, error) {
	rest, ok := strings.CutPrefix(key, NodesPrefix(cluster))
	if !ok {
		return "", "", fmt.Errorf("%w: %q not under %q", ErrBadKey, key, NodesPrefix(cluster))
	}
	role, id, ok := strings.Cut(rest, "/")
	if !ok {
		return "", "", fmt.Errorf("%w: %q has no id", ErrBadKey, key)
	}
	r, err := ParseRole(role)
	if err != nil {
		return "", "", fmt.Errorf("%w: %q: %v", ErrBadKey, key, err)
	}
	if err := ValidateID(id); err != nil {
		return "", "", fmt.Errorf("%w: %q: %v", ErrBadKey, key, err)
	}
	return r, id, nil
}
