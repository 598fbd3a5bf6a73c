//go:build linux && (amd64 || arm64)

package rdma

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
	"unsafe"

	"go.uber.org/zap"

	"github.com/duet-llm/duet/kvtransfer"
	"github.com/duet-llm/duet/kvtransfer/tcp"
)

// Compile-time guards: the tcp transport's RDMA hooks.
var (
	_ tcp.RDMADialer   = (*Dialer)(nil)
	_ tcp.RDMAAcceptor = (*Acceptor)(nil)
	_ tcp.RDMAPath     = (*path)(nil)
	_ tcp.RDMALink     = (*link)(nil)
)

// Config configures both halves.
type Config struct {
	// Discovery finds the device serving an address.
	Discovery Discovery
	// Device, when set, is used instead of discovery (with Port and
	// GIDIndex).
	Device   string
	Port     uint8
	GIDIndex int
	// Depth is the send queue depth per queue pair (default 256): a
	// writer waits for completions beyond it.
	Depth int
}

func (c Config) withDefaults() Config {
	if c.Port == 0 {
		c.Port = 1
	}
	if c.Depth <= 0 {
		c.Depth = 256
	}
	return c
}

// devices opens each device once per process side.
type devices struct {
	mu   sync.Mutex
	ctxs map[string]*Context
}

func (d *devices) open(lib *Lib, name string) (*Context, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if c, ok := d.ctxs[name]; ok {
		return c, false, nil
	}
	c, err := lib.Open(name)
	if err != nil {
		return nil, false, err
	}
	if d.ctxs == nil {
		d.ctxs = map[string]*Context{}
	}
	d.ctxs[name] = c
	return c, true, nil
}

func (c *Config) device(peer string, local net.IP) (Device, error) {
	if c.Device != "" {
		return Device{Name: c.Device, Port: c.Port, GIDIndex: c.GIDIndex}, nil
	}
	if local != nil {
		return c.Discovery.ForLocalIP(local)
	}
	return c.Discovery.ForPeer(peer)
}

func randomPSN() uint32 {
	var b [4]byte
	rand.Read(b[:])
	return binary.LittleEndian.Uint32(b[:]) & 0xffffff
}

// Dialer is the sender half: one queue pair per TCP connection, sources
// registered once per device.
type Dialer struct {
	cfg Config
	lg  *zap.Logger
	dev devices

	mu      sync.Mutex
	sources [][]byte
	mrs     map[*Context][]*MR
}

// NewDialer returns a dialer. It does no I/O.
func NewDialer(cfg Config, lg *zap.Logger) *Dialer {
	if lg == nil {
		lg = zap.NewNop()
	}
	return &Dialer{cfg: cfg.withDefaults(), lg: lg, mrs: map[*Context][]*MR{}}
}

// RegisterSource registers sender memory (the prefill engine's KV arena)
// that Writes will come from. One-sided writes need their source
// registered; a Write from other memory fails (and kvtransfer.Selector
// falls back to TCP for later sessions).
func (d *Dialer) RegisterSource(mem []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sources = append(d.sources, mem)
	for c := range d.mrs {
		if mr, err := c.RegMR(mem, false); err == nil {
			d.mrs[c] = append(d.mrs[c], mr)
		}
	}
}

func (d *Dialer) mrFor(c *Context, p []byte) *MR {
	d.mu.Lock()
	defer d.mu.Unlock()
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	for _, mr := range d.mrs[c] {
		if mr.contains(addr, len(p)) {
			return mr
		}
	}
	return nil
}

// Dial prepares a queue pair on the device that serves the route to peer.
func (d *Dialer) Dial(peer string) (tcp.RDMAPath, []byte, error) {
	lib, err := Load()
	if err != nil {
		return nil, nil, err
	}
	dev, err := d.cfg.device(peer, nil)
	if err != nil {
		return nil, nil, err
	}
	c, fresh, err := d.dev.open(lib, dev.Name)
	if err != nil {
		return nil, nil, err
	}
	if fresh {
		d.mu.Lock()
		d.mrs[c] = nil
		for _, mem := range d.sources {
			mr, err := c.RegMR(mem, false)
			if err != nil {
				d.mu.Unlock()
				return nil, nil, err
			}
			d.mrs[c] = append(d.mrs[c], mr)
		}
		d.mu.Unlock()
	}
	port, err := c.QueryPort(dev.Port)
	if err != nil {
		return nil, nil, err
	}
	if !port.Active {
		return nil, nil, fmt.Errorf("rdma: %s port %d is not active", dev.Name, dev.Port)
	}
	if dev.GID == ([16]byte{}) {
		dev.GID, _ = c.QueryGID(dev.Port, dev.GIDIndex)
	}
	cq, err := c.CreateCQ(2 * d.cfg.Depth)
	if err != nil {
		return nil, nil, err
	}
	qp, err := c.CreateRCQP(cq, d.cfg.Depth, 1)
	if err != nil {
		cq.Destroy()
		return nil, nil, err
	}
	p := &path{d: d, c: c, cq: cq, qp: qp, dev: dev, port: port, psn: randomPSN()}
	local := ConnParams{GID: dev.GID, LID: port.LID, QPN: qp.QPN, PSN: p.psn, MTU: port.MTU}
	b, err := local.MarshalBinary()
	if err != nil {
		p.Close()
		return nil, nil, err
	}
	d.lg.Debug("rdma queue pair prepared", zap.String("peer", peer), zap.String("device", dev.Name), zap.Uint32("qpn", qp.QPN))
	return p, b, nil
}

// path is the sender's queue pair toward one receiver connection.
type path struct {
	d      *Dialer
	c      *Context
	cq     *CQ
	qp     *QP
	dev    Device
	port   Port
	psn    uint32
	remote ConnParams

	mu          sync.Mutex
	outstanding int
	err         error
	nextID      uint64
}

func (p *path) Connect(reply []byte) error {
	if err := p.remote.UnmarshalBinary(reply); err != nil {
		return err
	}
	return p.qp.Connect(p.dev.Port, uint8(p.dev.GIDIndex), &p.remote, p.port.MTU, p.psn)
}

// reap polls completions; with wait it spins until one arrives or ctx ends.
func (p *path) reap(ctx context.Context, wait bool) error {
	var wcs [16]WC
	for {
		n, err := p.cq.Poll(wcs[:])
		if err != nil {
			return err
		}
		for _, wc := range wcs[:n] {
			p.outstanding--
			if wc.Status != wcSuccess && p.err == nil {
				p.err = fmt.Errorf("rdma: write completion status %d (queue pair in error)", wc.Status)
			}
		}
		if p.err != nil {
			return p.err
		}
		if n > 0 || !wait {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		time.Sleep(5 * time.Microsecond)
	}
}

func (p *path) Write(region kvtransfer.RegionID, off uint64, src []byte) error {
	addr, rkey, err := p.remote.remoteAddr(uint32(region), off, len(src))
	if err != nil {
		return err
	}
	mr := p.d.mrFor(p.c, src)
	if mr == nil {
		return fmt.Errorf("%w: source memory not registered (Dialer.RegisterSource)", kvtransfer.ErrRDMA)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	for p.outstanding >= p.d.cfg.Depth {
		if err := p.reap(context.Background(), true); err != nil {
			return err
		}
	}
	p.nextID++
	if err := p.qp.PostWrite(p.nextID, mr, src, addr, rkey, true, nil); err != nil {
		return err
	}
	p.outstanding++
	return p.reap(context.Background(), false)
}

// Fence posts the reservation's WRITE_WITH_IMM (imm = low 32 bits of the
// id) and waits until every earlier write on this queue pair completed: on
// an RC queue pair a completed RDMA WRITE has been acknowledged by the
// receiver's NIC, after the data was placed.
func (p *path) Fence(ctx context.Context, id uint64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err != nil {
		return p.err
	}
	imm := uint32(id)
	p.nextID++
	if err := p.qp.PostWrite(p.nextID, nil, nil, 0, 0, true, &imm); err != nil {
		return err
	}
	p.outstanding++
	for p.outstanding > 0 {
		if err := p.reap(ctx, true); err != nil {
			return err
		}
	}
	return nil
}

func (p *path) Close() error {
	return errors.Join(p.qp.Destroy(), p.cq.Destroy())
}

// Acceptor is the receiver half: the receiver's regions registered once on
// the device serving the listen address, one queue pair per connection.
type Acceptor struct {
	cfg  Config
	lg   *zap.Logger
	c    *Context
	dev  Device
	port Port
	mrs  []*MR
	keys []RegionKey
}

// OpenAcceptor opens the device that serves listenIP (or cfg.Device) and
// registers every region recv has (register the pool before calling it).
// Unlike New functions it does I/O: it is called once at startup, and its
// error is the reason the node does not advertise RDMA.
func OpenAcceptor(cfg Config, recv *kvtransfer.Receiver, listenIP net.IP, lg *zap.Logger) (*Acceptor, error) {
	if lg == nil {
		lg = zap.NewNop()
	}
	cfg = cfg.withDefaults()
	lib, err := Load()
	if err != nil {
		return nil, err
	}
	dev, err := cfg.device("", listenIP)
	if err != nil {
		return nil, err
	}
	c, err := lib.Open(dev.Name)
	if err != nil {
		return nil, err
	}
	port, err := c.QueryPort(dev.Port)
	if err != nil || !port.Active {
		c.Close()
		return nil, fmt.Errorf("rdma: %s port %d not usable: %v", dev.Name, dev.Port, err)
	}
	if dev.GID == ([16]byte{}) {
		dev.GID, _ = c.QueryGID(dev.Port, dev.GIDIndex)
	}
	a := &Acceptor{cfg: cfg, lg: lg, c: c, dev: dev, port: port}
	for _, mem := range recv.Regions() {
		mr, err := c.RegMR(mem, true)
		if err != nil {
			a.Close()
			return nil, err
		}
		a.mrs = append(a.mrs, mr)
		a.keys = append(a.keys, RegionKey{Addr: uint64(mr.base), Length: uint64(mr.n), RKey: mr.RKey})
	}
	lg.Info("rdma acceptor ready", zap.String("device", dev.Name), zap.Uint8("port", dev.Port), zap.Int("gid-index", dev.GIDIndex), zap.Int("regions", len(a.mrs)))
	return a, nil
}

// Close deregisters the regions and closes the device.
func (a *Acceptor) Close() error {
	var errs []error
	for _, mr := range a.mrs {
		errs = append(errs, mr.Deregister())
	}
	errs = append(errs, a.c.Close())
	return errors.Join(errs...)
}

const recvDepth = 256

// Accept creates and connects a queue pair for one sender connection.
func (a *Acceptor) Accept(params []byte) (tcp.RDMALink, []byte, error) {
	var remote ConnParams
	if err := remote.UnmarshalBinary(params); err != nil {
		return nil, nil, err
	}
	cq, err := a.c.CreateCQ(recvDepth)
	if err != nil {
		return nil, nil, err
	}
	qp, err := a.c.CreateRCQP(cq, 1, recvDepth)
	if err != nil {
		cq.Destroy()
		return nil, nil, err
	}
	l := &link{cq: cq, qp: qp, seen: map[uint32]int{}}
	for i := range recvDepth {
		if err := qp.PostRecv(uint64(i)); err != nil {
			l.Close()
			return nil, nil, err
		}
	}
	psn := randomPSN()
	if err := qp.Connect(a.dev.Port, uint8(a.dev.GIDIndex), &remote, a.port.MTU, psn); err != nil {
		l.Close()
		return nil, nil, err
	}
	local := ConnParams{GID: a.dev.GID, LID: a.port.LID, QPN: qp.QPN, PSN: psn, MTU: a.port.MTU, Regions: a.keys}
	b, err := local.MarshalBinary()
	if err != nil {
		l.Close()
		return nil, nil, err
	}
	return l, b, nil
}

// link is the receiver's queue pair for one connection.
type link struct {
	cq   *CQ
	qp   *QP
	mu   sync.Mutex
	seen map[uint32]int // fences arrived, by imm
}

// Fence waits for the sender's WRITE_WITH_IMM carrying id's low 32 bits.
func (l *link) Fence(ctx context.Context, id uint64) error {
	want := uint32(id)
	l.mu.Lock()
	defer l.mu.Unlock()
	var wcs [16]WC
	for {
		if l.seen[want] > 0 {
			if l.seen[want]--; l.seen[want] == 0 {
				delete(l.seen, want)
			}
			return nil
		}
		n, err := l.cq.Poll(wcs[:])
		if err != nil {
			return err
		}
		for _, wc := range wcs[:n] {
			if wc.Status != wcSuccess {
				return fmt.Errorf("rdma: receive completion status %d", wc.Status)
			}
			if wc.Opcode == wcRecvRDMAWithImm {
				var b [4]byte
				binary.LittleEndian.PutUint32(b[:], wc.Imm) // network order on the wire
				l.seen[binary.BigEndian.Uint32(b[:])]++
			}
			if err := l.qp.PostRecv(wc.ID); err != nil {
				return err
			}
		}
		if len(l.seen) > 4096 { // fences of sessions committed elsewhere
			clear(l.seen)
		}
		if n == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("rdma: fence for reservation %d: %w", id, err)
			}
			time.Sleep(5 * time.Microsecond)
		}
	}
}

func (l *link) Close() error { return errors.Join(l.qp.Destroy(), l.cq.Destroy()) }

// NewTransport returns a kvtransfer.Transport whose sessions write over
// RDMA, with open/commit/abort on TCP connections configured by tcfg. Use
// the Dialer to register the sender's source memory.
func NewTransport(tcfg tcp.Config, cfg Config, lg *zap.Logger) (*tcp.Transport, *Dialer) {
	d := NewDialer(cfg, lg)
	tcfg.RDMA = d
	return tcp.New(tcfg, lg), d
}
