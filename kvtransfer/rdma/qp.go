package rdma

import (
	"encoding/binary"
	"fmt"
)

// QPState is an ibv_qp_state.
type QPState int

// Queue-pair states (enum ibv_qp_state).
const (
	QPSReset QPState = 0
	QPSInit  QPState = 1
	QPSRTR   QPState = 2
	QPSRTS   QPState = 3
	QPSErr   QPState = 6
)

func (s QPState) String() string {
	switch s {
	case QPSReset:
		return "RESET"
	case QPSInit:
		return "INIT"
	case QPSRTR:
		return "RTR"
	case QPSRTS:
		return "RTS"
	case QPSErr:
		return "ERR"
	}
	return fmt.Sprintf("QPS(%d)", int(s))
}

// Attribute masks (enum ibv_qp_attr_mask).
const (
	maskState          = 1 << 0
	maskAccessFlags    = 1 << 3
	maskPkeyIndex      = 1 << 4
	maskPort           = 1 << 5
	maskAV             = 1 << 7
	maskPathMTU        = 1 << 8
	maskTimeout        = 1 << 9
	maskRetryCnt       = 1 << 10
	maskRNRRetry       = 1 << 11
	maskRQPSN          = 1 << 12
	maskMaxQPRdAtomic  = 1 << 13
	maskMinRNRTimer    = 1 << 15
	maskSQPSN          = 1 << 16
	maskMaxDestRdAtom  = 1 << 17
	maskDestQPN        = 1 << 20
	accessLocalWrite   = 1
	accessRemoteWrite  = 2
	linkLayerEthernet  = 2
	portActive         = 4
	qpTypeRC           = 2
	wrRDMAWrite        = 0
	wrRDMAWriteWithImm = 1
	sendSignaled       = 2
	wcSuccess          = 0
	wcRecvRDMAWithImm  = 129
)

// transition is one legal step of the RC connection sequence, with the
// attributes it must set (the verbs spec's required masks).
type transition struct {
	from, to QPState
	mask     int
}

var rcSteps = []transition{
	{QPSReset, QPSInit, maskState | maskPkeyIndex | maskPort | maskAccessFlags},
	{QPSInit, QPSRTR, maskState | maskAV | maskPathMTU | maskDestQPN | maskRQPSN | maskMaxDestRdAtom | maskMinRNRTimer},
	{QPSRTR, QPSRTS, maskState | maskTimeout | maskRetryCnt | maskRNRRetry | maskSQPSN | maskMaxQPRdAtomic},
}

// nextStep returns the transition from cur towards RTS, or an error if cur
// is not a state the connection sequence continues from.
func nextStep(cur, want QPState) (transition, error) {
	for _, t := range rcSteps {
		if t.from == cur && t.to == want {
			return t, nil
		}
	}
	return transition{}, fmt.Errorf("rdma: no transition %s -> %s", cur, want)
}

// qpAttr is struct ibv_qp_attr as bytes (layout.go has the offsets).
type qpAttr [qpAttrSize]byte

func (a *qpAttr) u8(off int, v uint8)   { a[off] = v }
func (a *qpAttr) u16(off int, v uint16) { binary.LittleEndian.PutUint16(a[off:], v) }
func (a *qpAttr) u32(off int, v uint32) { binary.LittleEndian.PutUint32(a[off:], v) }

// initAttr: RESET -> INIT, remote writes allowed (the receiver's pool).
func initAttr(port uint8) (*qpAttr, int) {
	a := new(qpAttr)
	a.u32(offAttrQPState, uint32(QPSInit))
	a.u16(offAttrPkeyIndex, 0)
	a.u8(offAttrPortNum, port)
	a.u32(offAttrAccessFlags, accessLocalWrite|accessRemoteWrite)
	return a, rcSteps[0].mask
}

// rtrAttr: INIT -> RTR towards the remote queue pair. With a GID the
// address is routed (RoCE, or IB across subnets); sgidIndex is the local
// GID index that matches the address used to reach the peer.
func rtrAttr(port uint8, sgidIndex uint8, remote *ConnParams, mtu uint8) (*qpAttr, int) {
	a := new(qpAttr)
	a.u32(offAttrQPState, uint32(QPSRTR))
	a.u32(offAttrPathMTU, uint32(min(mtu, remote.MTU)))
	a.u32(offAttrDestQPN, remote.QPN)
	a.u32(offAttrRQPSN, remote.PSN)
	a.u8(offAttrMaxDestRdAtomic, 1)
	a.u8(offAttrMinRNRTimer, 12) // 0.64 ms
	a.u16(offAttrDLID, remote.LID)
	a.u8(offAttrSL, 0)
	a.u8(offAttrAHPortNum, port)
	if remote.GID != ([16]byte{}) {
		a.u8(offAttrIsGlobal, 1)
		copy(a[offAttrDGID:offAttrDGID+16], remote.GID[:])
		a.u8(offAttrSGIDIndex, sgidIndex)
		a.u8(offAttrHopLimit, 64)
	}
	return a, rcSteps[1].mask
}

// rtsAttr: RTR -> RTS with our send PSN.
func rtsAttr(psn uint32) (*qpAttr, int) {
	a := new(qpAttr)
	a.u32(offAttrQPState, uint32(QPSRTS))
	a.u8(offAttrTimeout, 14) // 4.096us * 2^14 = 67 ms per retry
	a.u8(offAttrRetryCnt, 7)
	a.u8(offAttrRNRRetry, 7)
	a.u32(offAttrSQPSN, psn)
	a.u8(offAttrMaxRdAtomic, 1)
	return a, rcSteps[2].mask
}

// connectSequence returns the attributes for each step RESET -> RTS.
func connectSequence(port, sgidIndex uint8, remote *ConnParams, mtu uint8, psn uint32) ([]*qpAttr, []int) {
	a0, m0 := initAttr(port)
	a1, m1 := rtrAttr(port, sgidIndex, remote, mtu)
	a2, m2 := rtsAttr(psn)
	return []*qpAttr{a0, a1, a2}, []int{m0, m1, m2}
}
