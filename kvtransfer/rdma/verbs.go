//go:build linux && (amd64 || arm64)

package rdma

import (
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"github.com/ebitengine/purego"
)

// Errors.
var (
	ErrNoLibrary   = errors.New("rdma: libibverbs.so.1 not loadable")
	ErrNoDevice    = errors.New("rdma: no rdma device")
	ErrUnsupported = errors.New("rdma: not supported on this platform")
)

// Lib is the loaded libibverbs.
type Lib struct {
	h uintptr

	getDeviceList, freeDeviceList, getDeviceName, openDevice, closeDevice uintptr
	allocPD, deallocPD, regMR, deregMR, createCQ, destroyCQ               uintptr
	createQP, destroyQP, modifyQP, queryPort, queryGID                    uintptr
}

var (
	loadOnce sync.Once
	loaded   *Lib
	loadErr  error
)

// Load opens libibverbs.so.1 once and resolves the verbs this package
// uses. Without the library it returns ErrNoLibrary (the node uses TCP).
func Load() (*Lib, error) {
	loadOnce.Do(func() { loaded, loadErr = load("libibverbs.so.1") })
	return loaded, loadErr
}

func load(name string) (*Lib, error) {
	h, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_GLOBAL)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoLibrary, err)
	}
	l := &Lib{h: h}
	for _, s := range []struct {
		p    *uintptr
		name string
	}{
		{&l.getDeviceList, "ibv_get_device_list"}, {&l.freeDeviceList, "ibv_free_device_list"},
		{&l.getDeviceName, "ibv_get_device_name"}, {&l.openDevice, "ibv_open_device"},
		{&l.closeDevice, "ibv_close_device"}, {&l.allocPD, "ibv_alloc_pd"}, {&l.deallocPD, "ibv_dealloc_pd"},
		{&l.regMR, "ibv_reg_mr"}, {&l.deregMR, "ibv_dereg_mr"}, {&l.createCQ, "ibv_create_cq"},
		{&l.destroyCQ, "ibv_destroy_cq"}, {&l.createQP, "ibv_create_qp"}, {&l.destroyQP, "ibv_destroy_qp"},
		{&l.modifyQP, "ibv_modify_qp"}, {&l.queryPort, "ibv_query_port"}, {&l.queryGID, "ibv_query_gid"},
	} {
		p, err := purego.Dlsym(h, s.name)
		if err != nil {
			purego.Dlclose(h)
			return nil, fmt.Errorf("%w: %s: %v", ErrNoLibrary, s.name, err)
		}
		*s.p = p
	}
	return l, nil
}

func call(fn uintptr, args ...uintptr) (uintptr, syscall.Errno) {
	r, _, errno := purego.SyscallN(fn, args...)
	return r, syscall.Errno(errno)
}

// cptr turns an address of C memory (never Go memory) into a pointer. The
// indirection keeps vet's uintptr check, meant for Go memory, quiet.
func cptr(p uintptr) unsafe.Pointer { return *(*unsafe.Pointer)(unsafe.Pointer(&p)) }

func peek64(p uintptr, off int) uint64 { return *(*uint64)(cptr(p + uintptr(off))) }
func peek32(p uintptr, off int) uint32 { return *(*uint32)(cptr(p + uintptr(off))) }

// Devices lists the RDMA devices. ibv_get_device_list returns NULL with
// errno ENOSYS on kernels without InfiniBand support: that is no devices,
// not an error.
func (l *Lib) Devices() ([]string, error) {
	var n int32
	list, errno := call(l.getDeviceList, uintptr(unsafe.Pointer(&n)))
	if list == 0 {
		if errno == syscall.ENOSYS || errno == 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("rdma: ibv_get_device_list: %w", errno)
	}
	defer call(l.freeDeviceList, list)
	names := make([]string, 0, n)
	for i := range int(n) {
		dev := *(*uintptr)(cptr(list + uintptr(i)*8))
		name, _ := call(l.getDeviceName, dev)
		names = append(names, cstring(name))
	}
	return names, nil
}

func cstring(p uintptr) string {
	if p == 0 {
		return ""
	}
	var b []byte
	for i := uintptr(0); i < 64; i++ {
		c := *(*byte)(cptr(p + i))
		if c == 0 {
			break
		}
		b = append(b, c)
	}
	return string(b)
}

// Context is an open device with one protection domain.
type Context struct {
	l   *Lib
	ctx uintptr
	pd  uintptr
	// the inline verbs go through the context's ops table
	pollCQ, postSend, postRecv uintptr
}

// Open opens the named device and allocates a protection domain.
func (l *Lib) Open(name string) (*Context, error) {
	var n int32
	list, errno := call(l.getDeviceList, uintptr(unsafe.Pointer(&n)))
	if list == 0 {
		return nil, fmt.Errorf("%w: ibv_get_device_list: %v", ErrNoDevice, errno)
	}
	defer call(l.freeDeviceList, list)
	var dev uintptr
	for i := range int(n) {
		d := *(*uintptr)(cptr(list + uintptr(i)*8))
		if p, _ := call(l.getDeviceName, d); cstring(p) == name {
			dev = d
		}
	}
	if dev == 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoDevice, name)
	}
	ctx, errno := call(l.openDevice, dev)
	if ctx == 0 {
		return nil, fmt.Errorf("rdma: ibv_open_device %s: %w", name, errno)
	}
	pd, errno := call(l.allocPD, ctx)
	if pd == 0 {
		call(l.closeDevice, ctx)
		return nil, fmt.Errorf("rdma: ibv_alloc_pd: %w", errno)
	}
	return &Context{l: l, ctx: ctx, pd: pd,
		pollCQ:   uintptr(peek64(ctx, offCtxPollCQ)),
		postSend: uintptr(peek64(ctx, offCtxPostSend)),
		postRecv: uintptr(peek64(ctx, offCtxPostRecv)),
	}, nil
}

// Close releases the protection domain and the device.
func (c *Context) Close() error {
	r1, _ := call(c.l.deallocPD, c.pd)
	r2, _ := call(c.l.closeDevice, c.ctx)
	if r1 != 0 || r2 != 0 {
		return fmt.Errorf("rdma: close device: %d %d", int32(r1), int32(r2))
	}
	return nil
}

// Port is what the connection needs of a port.
type Port struct {
	Active    bool
	MTU       uint8 // IBV_MTU_* enum
	LID       uint16
	LinkLayer uint8 // 1 InfiniBand, 2 Ethernet
}

// QueryPort queries port (1-based).
func (c *Context) QueryPort(port uint8) (Port, error) {
	var attr [256]byte // larger than any ibv_port_attr version
	if r, errno := call(c.l.queryPort, c.ctx, uintptr(port), uintptr(unsafe.Pointer(&attr[0]))); r != 0 {
		return Port{}, fmt.Errorf("rdma: ibv_query_port %d: %d %v", port, int32(r), errno)
	}
	return Port{
		Active:    binary.LittleEndian.Uint32(attr[offPortState:]) == portActive,
		MTU:       uint8(binary.LittleEndian.Uint32(attr[offPortActiveMTU:])),
		LID:       binary.LittleEndian.Uint16(attr[offPortLID:]),
		LinkLayer: attr[offPortLinkLayer],
	}, nil
}

// QueryGID returns GID index of port.
func (c *Context) QueryGID(port uint8, index int) ([16]byte, error) {
	var gid [16]byte
	if r, errno := call(c.l.queryGID, c.ctx, uintptr(port), uintptr(index), uintptr(unsafe.Pointer(&gid[0]))); r != 0 {
		return gid, fmt.Errorf("rdma: ibv_query_gid: %v", errno)
	}
	return gid, nil
}

// MR is a registered memory region.
type MR struct {
	c    *Context
	mr   uintptr
	base uintptr
	n    int
	LKey uint32
	RKey uint32
}

// RegMR registers buf. The caller keeps buf alive and unmoved (a pool
// allocated once, ideally with mmap) until Deregister.
func (c *Context) RegMR(buf []byte, remoteWrite bool) (*MR, error) {
	access := uintptr(accessLocalWrite)
	if remoteWrite {
		access |= accessRemoteWrite
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	mr, errno := call(c.l.regMR, c.pd, base, uintptr(len(buf)), access)
	runtime.KeepAlive(buf)
	if mr == 0 {
		return nil, fmt.Errorf("rdma: ibv_reg_mr of %d bytes: %w", len(buf), errno)
	}
	return &MR{c: c, mr: mr, base: base, n: len(buf), LKey: peek32(mr, offMRLKey), RKey: peek32(mr, offMRRKey)}, nil
}

// Deregister releases the registration.
func (m *MR) Deregister() error {
	if r, errno := call(m.c.l.deregMR, m.mr); r != 0 {
		return fmt.Errorf("rdma: ibv_dereg_mr: %v", errno)
	}
	return nil
}

// contains reports whether p[:n] lies in the registered range.
func (m *MR) contains(p uintptr, n int) bool {
	return p >= m.base && p+uintptr(n) <= m.base+uintptr(m.n)
}

// CQ is a completion queue.
type CQ struct {
	c  *Context
	cq uintptr
}

// CreateCQ creates a completion queue of n entries.
func (c *Context) CreateCQ(n int) (*CQ, error) {
	cq, errno := call(c.l.createCQ, c.ctx, uintptr(n), 0, 0, 0)
	if cq == 0 {
		return nil, fmt.Errorf("rdma: ibv_create_cq: %w", errno)
	}
	return &CQ{c: c, cq: cq}, nil
}

// Destroy destroys the queue.
func (q *CQ) Destroy() error {
	if r, errno := call(q.c.l.destroyCQ, q.cq); r != 0 {
		return fmt.Errorf("rdma: ibv_destroy_cq: %v", errno)
	}
	return nil
}

// WC is a work completion.
type WC struct {
	ID     uint64
	Status uint32
	Opcode uint32
	Imm    uint32 // network byte order as the verbs deliver it
}

// Poll reaps up to len(out) completions without blocking.
func (q *CQ) Poll(out []WC) (int, error) {
	var raw [16 * wcSize]byte
	n := min(len(out), 16)
	r, _ := call(q.c.pollCQ, q.cq, uintptr(n), uintptr(unsafe.Pointer(&raw[0])))
	got := int(int32(r))
	if got < 0 {
		return 0, fmt.Errorf("rdma: ibv_poll_cq: %d", got)
	}
	for i := range got {
		w := raw[i*wcSize:]
		out[i] = WC{
			ID:     binary.LittleEndian.Uint64(w[offWCID:]),
			Status: binary.LittleEndian.Uint32(w[offWCStatus:]),
			Opcode: binary.LittleEndian.Uint32(w[offWCOpcode:]),
			Imm:    binary.LittleEndian.Uint32(w[offWCImm:]),
		}
	}
	return got, nil
}

// QP is an RC queue pair.
type QP struct {
	c     *Context
	qp    uintptr
	QPN   uint32
	state QPState
}

// CreateRCQP creates an RC queue pair on cq.
func (c *Context) CreateRCQP(cq *CQ, maxSend, maxRecv int) (*QP, error) {
	var a [qpInitAttrSize]byte
	binary.LittleEndian.PutUint64(a[offInitSendCQ:], uint64(cq.cq))
	binary.LittleEndian.PutUint64(a[offInitRecvCQ:], uint64(cq.cq))
	binary.LittleEndian.PutUint32(a[offInitMaxSendWR:], uint32(maxSend))
	binary.LittleEndian.PutUint32(a[offInitMaxRecvWR:], uint32(maxRecv))
	binary.LittleEndian.PutUint32(a[offInitMaxSendSGE:], 1)
	binary.LittleEndian.PutUint32(a[offInitMaxRecvSGE:], 1)
	binary.LittleEndian.PutUint32(a[offInitQPType:], qpTypeRC)
	qp, errno := call(c.l.createQP, c.pd, uintptr(unsafe.Pointer(&a[0])))
	if qp == 0 {
		return nil, fmt.Errorf("rdma: ibv_create_qp: %w", errno)
	}
	return &QP{c: c, qp: qp, QPN: peek32(qp, offQPNum), state: QPSReset}, nil
}

// Destroy destroys the queue pair.
func (q *QP) Destroy() error {
	if r, errno := call(q.c.l.destroyQP, q.qp); r != 0 {
		return fmt.Errorf("rdma: ibv_destroy_qp: %v", errno)
	}
	return nil
}

// Connect moves the queue pair RESET -> INIT -> RTR -> RTS towards remote.
func (q *QP) Connect(port, sgidIndex uint8, remote *ConnParams, mtu uint8, psn uint32) error {
	attrs, masks := connectSequence(port, sgidIndex, remote, mtu, psn)
	for i, to := range []QPState{QPSInit, QPSRTR, QPSRTS} {
		if _, err := nextStep(q.state, to); err != nil {
			return err
		}
		if r, errno := call(q.c.l.modifyQP, q.qp, uintptr(unsafe.Pointer(&attrs[i][0])), uintptr(masks[i])); r != 0 {
			return fmt.Errorf("rdma: ibv_modify_qp %s -> %s: %d %v", q.state, to, int32(r), errno)
		}
		q.state = to
	}
	return nil
}

// PostWrite posts an RDMA WRITE of local (inside mr) to remote addr/rkey;
// with imm it is a WRITE_WITH_IMM (imm in host order; sent big endian).
func (q *QP) PostWrite(id uint64, mr *MR, local []byte, addr uint64, rkey uint32, signaled bool, imm *uint32) error {
	var sge [sgeSize]byte
	var wr [sendWRSize]byte
	p := uintptr(unsafe.Pointer(unsafe.SliceData(local)))
	if len(local) > 0 {
		if mr == nil || !mr.contains(p, len(local)) {
			return errors.New("rdma: source bytes are not in a registered region")
		}
		binary.LittleEndian.PutUint64(sge[0:], uint64(p))
		binary.LittleEndian.PutUint32(sge[8:], uint32(len(local)))
		binary.LittleEndian.PutUint32(sge[12:], mr.LKey)
		binary.LittleEndian.PutUint64(wr[offSWSGList:], uint64(uintptr(unsafe.Pointer(&sge[0]))))
		binary.LittleEndian.PutUint32(wr[offSWNumSGE:], 1)
	}
	binary.LittleEndian.PutUint64(wr[offSWRID:], id)
	op := uint32(wrRDMAWrite)
	if imm != nil {
		op = wrRDMAWriteWithImm
		binary.BigEndian.PutUint32(wr[offSWImm:], *imm)
	}
	binary.LittleEndian.PutUint32(wr[offSWOpcode:], op)
	if signaled {
		binary.LittleEndian.PutUint32(wr[offSWSendFlags:], sendSignaled)
	}
	binary.LittleEndian.PutUint64(wr[offSWRemoteAddr:], addr)
	binary.LittleEndian.PutUint32(wr[offSWRKey:], rkey)
	var bad uintptr
	r, _ := call(q.c.postSend, q.qp, uintptr(unsafe.Pointer(&wr[0])), uintptr(unsafe.Pointer(&bad)))
	runtime.KeepAlive(&sge)
	runtime.KeepAlive(local)
	if r != 0 {
		return fmt.Errorf("rdma: ibv_post_send: %v", syscall.Errno(r))
	}
	return nil
}

// PostRecv posts a zero-length receive, consumed by an incoming
// WRITE_WITH_IMM.
func (q *QP) PostRecv(id uint64) error {
	var wr [recvWRSize]byte
	binary.LittleEndian.PutUint64(wr[offRWRID:], id)
	var bad uintptr
	if r, _ := call(q.c.postRecv, q.qp, uintptr(unsafe.Pointer(&wr[0])), uintptr(unsafe.Pointer(&bad))); r != 0 {
		return fmt.Errorf("rdma: ibv_post_recv: %v", syscall.Errno(r))
	}
	return nil
}
