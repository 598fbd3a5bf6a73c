package rdma

// Offsets and sizes of the libibverbs structs this package touches
// (LP64: linux/amd64 and linux/arm64). Checked against verbs.h by
// TestLayoutMatchesHeaders whenever libibverbs-dev is installed.
const (
	offCtxPollCQ   = 96  // ibv_context.ops.poll_cq
	offCtxPostSend = 208 // ibv_context.ops.post_send
	offCtxPostRecv = 216 // ibv_context.ops.post_recv

	offQPContext = 0  // ibv_qp.context
	offQPNum     = 52 // ibv_qp.qp_num
	offCQContext = 0  // ibv_cq.context

	offMRAddr = 16 // ibv_mr.addr
	offMRLen  = 24
	offMRLKey = 36
	offMRRKey = 40

	qpInitAttrSize         = 64 // ibv_qp_init_attr
	offInitSendCQ          = 8
	offInitRecvCQ          = 16
	offInitMaxSendWR       = 32
	offInitMaxRecvWR       = 36
	offInitMaxSendSGE      = 40
	offInitMaxRecvSGE      = 44
	offInitMaxInline       = 48
	offInitQPType          = 52
	offInitSQSigAll        = 56
	qpAttrSize             = 144 // ibv_qp_attr
	offAttrQPState         = 0
	offAttrPathMTU         = 8
	offAttrRQPSN           = 20
	offAttrSQPSN           = 24
	offAttrDestQPN         = 28
	offAttrAccessFlags     = 32
	offAttrDGID            = 56 // ah_attr.grh.dgid
	offAttrSGIDIndex       = 76
	offAttrHopLimit        = 77
	offAttrDLID            = 80 // ah_attr.dlid
	offAttrSL              = 82
	offAttrIsGlobal        = 85
	offAttrAHPortNum       = 86
	offAttrPkeyIndex       = 120
	offAttrMaxRdAtomic     = 126
	offAttrMaxDestRdAtomic = 127
	offAttrMinRNRTimer     = 128
	offAttrPortNum         = 129
	offAttrTimeout         = 130
	offAttrRetryCnt        = 131
	offAttrRNRRetry        = 132

	sendWRSize       = 128 // ibv_send_wr
	offSWRID         = 0
	offSWNext        = 8
	offSWSGList      = 16
	offSWNumSGE      = 24
	offSWOpcode      = 28
	offSWSendFlags   = 32
	offSWImm         = 36
	offSWRemoteAddr  = 40
	offSWRKey        = 48
	recvWRSize       = 32 // ibv_recv_wr
	offRWRID         = 0
	offRWNext        = 8
	offRWSGList      = 16
	offRWNumSGE      = 24
	sgeSize          = 16 // ibv_sge: addr u64, length u32, lkey u32
	wcSize           = 48 // ibv_wc
	offWCID          = 0
	offWCStatus      = 8
	offWCOpcode      = 12
	offWCByteLen     = 20
	offWCImm         = 24
	offWCQPNum       = 28
	offWCFlags       = 36
	portAttrSize     = 52 // ibv_port_attr (compat part ibv_query_port fills)
	offPortState     = 0
	offPortActiveMTU = 8
	offPortLID       = 34
	offPortLinkLayer = 46
)

// layoutTable maps the names used in testdata/layout.c to the constants.
var layoutTable = map[string]int{
	"ibv_context.ops.poll_cq": offCtxPollCQ, "ibv_context.ops.post_send": offCtxPostSend, "ibv_context.ops.post_recv": offCtxPostRecv,
	"ibv_qp.context": offQPContext, "ibv_qp.qp_num": offQPNum, "ibv_cq.context": offCQContext,
	"ibv_mr.addr": offMRAddr, "ibv_mr.length": offMRLen, "ibv_mr.lkey": offMRLKey, "ibv_mr.rkey": offMRRKey,
	"ibv_qp_init_attr.size": qpInitAttrSize, "ibv_qp_init_attr.send_cq": offInitSendCQ, "ibv_qp_init_attr.recv_cq": offInitRecvCQ,
	"ibv_qp_init_attr.cap.max_send_wr": offInitMaxSendWR, "ibv_qp_init_attr.cap.max_recv_wr": offInitMaxRecvWR,
	"ibv_qp_init_attr.cap.max_send_sge": offInitMaxSendSGE, "ibv_qp_init_attr.cap.max_recv_sge": offInitMaxRecvSGE,
	"ibv_qp_init_attr.cap.max_inline_data": offInitMaxInline, "ibv_qp_init_attr.qp_type": offInitQPType, "ibv_qp_init_attr.sq_sig_all": offInitSQSigAll,
	"ibv_qp_attr.size": qpAttrSize, "ibv_qp_attr.qp_state": offAttrQPState, "ibv_qp_attr.path_mtu": offAttrPathMTU,
	"ibv_qp_attr.rq_psn": offAttrRQPSN, "ibv_qp_attr.sq_psn": offAttrSQPSN, "ibv_qp_attr.dest_qp_num": offAttrDestQPN,
	"ibv_qp_attr.qp_access_flags": offAttrAccessFlags, "ibv_qp_attr.ah_attr.grh.dgid": offAttrDGID,
	"ibv_qp_attr.ah_attr.grh.sgid_index": offAttrSGIDIndex, "ibv_qp_attr.ah_attr.grh.hop_limit": offAttrHopLimit,
	"ibv_qp_attr.ah_attr.dlid": offAttrDLID, "ibv_qp_attr.ah_attr.sl": offAttrSL, "ibv_qp_attr.ah_attr.is_global": offAttrIsGlobal,
	"ibv_qp_attr.ah_attr.port_num": offAttrAHPortNum, "ibv_qp_attr.pkey_index": offAttrPkeyIndex,
	"ibv_qp_attr.max_rd_atomic": offAttrMaxRdAtomic, "ibv_qp_attr.max_dest_rd_atomic": offAttrMaxDestRdAtomic,
	"ibv_qp_attr.min_rnr_timer": offAttrMinRNRTimer, "ibv_qp_attr.port_num": offAttrPortNum, "ibv_qp_attr.timeout": offAttrTimeout,
	"ibv_qp_attr.retry_cnt": offAttrRetryCnt, "ibv_qp_attr.rnr_retry": offAttrRNRRetry,
	"ibv_send_wr.size": sendWRSize, "ibv_send_wr.wr_id": offSWRID, "ibv_send_wr.next": offSWNext, "ibv_send_wr.sg_list": offSWSGList,
	"ibv_send_wr.num_sge": offSWNumSGE, "ibv_send_wr.opcode": offSWOpcode, "ibv_send_wr.send_flags": offSWSendFlags,
	"ibv_send_wr.imm_data": offSWImm, "ibv_send_wr.wr.rdma.remote_addr": offSWRemoteAddr, "ibv_send_wr.wr.rdma.rkey": offSWRKey,
	"ibv_recv_wr.size": recvWRSize, "ibv_recv_wr.wr_id": offRWRID, "ibv_recv_wr.next": offRWNext, "ibv_recv_wr.sg_list": offRWSGList,
	"ibv_recv_wr.num_sge": offRWNumSGE, "ibv_sge.size": sgeSize,
	"ibv_wc.size": wcSize, "ibv_wc.wr_id": offWCID, "ibv_wc.status": offWCStatus, "ibv_wc.opcode": offWCOpcode,
	"ibv_wc.byte_len": offWCByteLen, "ibv_wc.imm_data": offWCImm, "ibv_wc.qp_num": offWCQPNum, "ibv_wc.wc_flags": offWCFlags,
	"ibv_port_attr.size": portAttrSize, "ibv_port_attr.state": offPortState, "ibv_port_attr.active_mtu": offPortActiveMTU,
	"ibv_port_attr.lid": offPortLID, "ibv_port_attr.link_layer": offPortLinkLayer,
}
