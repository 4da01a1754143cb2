/* The CPU backend's entry points: forward and backward of every op kind, by dispatch on the kind. */
#include "cpu/kernels.h"

brg_status brg__cpu_check_blas_dims(const brg__op_call *call, int count, const int64_t *dims) {
    for (int i = 0; i < count; i++)
        if (dims[i] < 0 || dims[i] > INT_MAX)
            return brg__message_set(call->msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_UNSUPPORTED,
                                    "op '%s' (%s): GEMM dimension %lld exceeds the BLAS integer range",
                                    call->op->name, brg_op_kind_name(call->op->kind), (long long)dims[i]);
    return BRG_OK;
}

brg_status brg__cpu_forward(const brg__op_call *call) {
    switch (call->op->kind) {
    case BRG_OP_EMBEDDING: return brg__cpu_embedding_forward(call);
    case BRG_OP_LINEAR: return brg__cpu_linear_forward(call);
    case BRG_OP_MATMUL: return brg__cpu_matmul_forward(call);
    case BRG_OP_ADD: return brg__cpu_add_forward(call);
    case BRG_OP_LAYERNORM: return brg__cpu_layernorm_forward(call);
    case BRG_OP_GELU: return brg__cpu_gelu_forward(call);
    case BRG_OP_RELU: return brg__cpu_relu_forward(call);
    case BRG_OP_ATTENTION: return brg__cpu_attention_forward(call);
    case BRG_OP_CROSS_ENTROPY: return brg__cpu_cross_entropy_forward(call);
    case BRG_OP_TP_COPY: /* the group's collectives: the stage runs them, not a kernel */
    case BRG_OP_TP_REDUCE:
    case BRG_OP_TP_GATHER:
    case BRG_OP_TP_SCATTER:
    case BRG_OP_KIND_COUNT: break;
    }
    return brg__message_set(call->msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_UNSUPPORTED,
                            "op '%s': kind %d has no CPU forward kernel", call->op->name, (int)call->op->kind);
}

brg_status brg__cpu_backward(const brg__op_call *call) {
    switch (call->op->kind) {
    case BRG_OP_EMBEDDING: return brg__cpu_embedding_backward(call);
    case BRG_OP_LINEAR: return brg__cpu_linear_backward(call);
    case BRG_OP_MATMUL: return brg__cpu_matmul_backward(call);
    case BRG_OP_ADD: return brg__cpu_add_backward(call);
    case BRG_OP_LAYERNORM: return brg__cpu_layernorm_backward(call);
    case BRG_OP_GELU: return brg__cpu_gelu_backward(call);
    case BRG_OP_RELU: return brg__cpu_relu_backward(call);
    case BRG_OP_ATTENTION: return brg__cpu_attention_backward(call);
    case BRG_OP_CROSS_ENTROPY: return brg__cpu_cross_entropy_backward(call);
    case BRG_OP_TP_COPY:
    case BRG_OP_TP_REDUCE:
    case BRG_OP_TP_GATHER:
    case BRG_OP_TP_SCATTER:
    case BRG_OP_KIND_COUNT: break;
    }
    return brg__message_set(call->msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_UNSUPPORTED,
                            "op '%s': kind %d has no CPU backward kernel", call->op->name, (int)call->op->kind);
}
