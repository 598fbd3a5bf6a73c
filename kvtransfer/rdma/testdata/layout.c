/* Prints the offsets, sizes and enum values package rdma hard-codes, from the
   real <infiniband/verbs.h>; TestLayoutMatchesHeaders compares them. */
#include <stdio.h>
#include <stddef.h>
#include <infiniband/verbs.h>
#define O(t,f) printf("%s.%s %zu\n", #t, #f, offsetof(struct t, f))
#define S(t) printf("%s.size %zu\n", #t, sizeof(struct t))
int main(void){
 O(ibv_context, ops.poll_cq); O(ibv_context, ops.post_send); O(ibv_context, ops.post_recv);
 O(ibv_qp, context); O(ibv_qp, qp_num);
 O(ibv_cq, context);
 O(ibv_mr, addr); O(ibv_mr, length); O(ibv_mr, lkey); O(ibv_mr, rkey);
 S(ibv_qp_init_attr); O(ibv_qp_init_attr, send_cq); O(ibv_qp_init_attr, recv_cq); O(ibv_qp_init_attr, cap.max_send_wr); O(ibv_qp_init_attr, cap.max_recv_wr); O(ibv_qp_init_attr, cap.max_send_sge); O(ibv_qp_init_attr, cap.max_recv_sge); O(ibv_qp_init_attr, cap.max_inline_data); O(ibv_qp_init_attr, qp_type); O(ibv_qp_init_attr, sq_sig_all);
 S(ibv_qp_attr); O(ibv_qp_attr, qp_state); O(ibv_qp_attr, path_mtu); O(ibv_qp_attr, rq_psn); O(ibv_qp_attr, sq_psn); O(ibv_qp_attr, dest_qp_num); O(ibv_qp_attr, qp_access_flags);
 O(ibv_qp_attr, ah_attr.grh.dgid); O(ibv_qp_attr, ah_attr.grh.sgid_index); O(ibv_qp_attr, ah_attr.grh.hop_limit);
 O(ibv_qp_attr, ah_attr.dlid); O(ibv_qp_attr, ah_attr.sl); O(ibv_qp_attr, ah_attr.is_global); O(ibv_qp_attr, ah_attr.port_num);
 O(ibv_qp_attr, pkey_index); O(ibv_qp_attr, max_rd_atomic); O(ibv_qp_attr, max_dest_rd_atomic); O(ibv_qp_attr, min_rnr_timer); O(ibv_qp_attr, port_num); O(ibv_qp_attr, timeout); O(ibv_qp_attr, retry_cnt); O(ibv_qp_attr, rnr_retry);
 S(ibv_send_wr); O(ibv_send_wr, wr_id); O(ibv_send_wr, next); O(ibv_send_wr, sg_list); O(ibv_send_wr, num_sge); O(ibv_send_wr, opcode); O(ibv_send_wr, send_flags); O(ibv_send_wr, imm_data); O(ibv_send_wr, wr.rdma.remote_addr); O(ibv_send_wr, wr.rdma.rkey);
 S(ibv_recv_wr); O(ibv_recv_wr, wr_id); O(ibv_recv_wr, next); O(ibv_recv_wr, sg_list); O(ibv_recv_wr, num_sge);
 S(ibv_sge);
 S(ibv_wc); O(ibv_wc, wr_id); O(ibv_wc, status); O(ibv_wc, opcode); O(ibv_wc, byte_len); O(ibv_wc, imm_data); O(ibv_wc, qp_num); O(ibv_wc, wc_flags);
 S(ibv_port_attr); O(ibv_port_attr, state); O(ibv_port_attr, active_mtu); O(ibv_port_attr, lid); O(ibv_port_attr, link_layer);
 printf("IBV_WR_RDMA_WRITE %d IBV_WR_RDMA_WRITE_WITH_IMM %d IBV_SEND_SIGNALED %d IBV_WC_RECV_RDMA_WITH_IMM %d IBV_QPT_RC %d\n", IBV_WR_RDMA_WRITE, IBV_WR_RDMA_WRITE_WITH_IMM, IBV_SEND_SIGNALED, IBV_WC_RECV_RDMA_WITH_IMM, IBV_QPT_RC);
 printf("IBV_QP_STATE %d PKEY %d PORT %d ACCESS %d AV %d PATH_MTU %d DEST_QPN %d RQ_PSN %d MAX_DEST_RD_ATOMIC %d MIN_RNR_TIMER %d TIMEOUT %d RETRY_CNT %d RNR_RETRY %d SQ_PSN %d MAX_QP_RD_ATOMIC %d\n", IBV_QP_STATE, IBV_QP_PKEY_INDEX, IBV_QP_PORT, IBV_QP_ACCESS_FLAGS, IBV_QP_AV, IBV_QP_PATH_MTU, IBV_QP_DEST_QPN, IBV_QP_RQ_PSN, IBV_QP_MAX_DEST_RD_ATOMIC, IBV_QP_MIN_RNR_TIMER, IBV_QP_TIMEOUT, IBV_QP_RETRY_CNT, IBV_QP_RNR_RETRY, IBV_QP_SQ_PSN, IBV_QP_MAX_QP_RD_ATOMIC);
 printf("ACCESS_LOCAL_WRITE %d REMOTE_WRITE %d WC_SUCCESS %d LINK_LAYER_ETHERNET %d PORT_ACTIVE %d\n", IBV_ACCESS_LOCAL_WRITE, IBV_ACCESS_REMOTE_WRITE, IBV_WC_SUCCESS, IBV_LINK_LAYER_ETHERNET, IBV_PORT_ACTIVE);
 return 0;
}
