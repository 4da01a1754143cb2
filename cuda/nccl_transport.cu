// The NCCL transport (engine/transport/transport.h): ranks are threads of one process, one GPU each.
#include "common.cuh"
#include "cuda.h"
extern "C" {
#include "transport/transport.h"
}

extern "C" brg_status brg__nccl_fabric_create(brg__nccl_fabric **out, int ranks, const int *devices,
                                              double timeout_seconds, char *msg) {
    (void)out;
    (void)ranks;
    (void)devices;
    (void)timeout_seconds;
    if (msg) snprintf(msg, BRG_ERROR_MESSAGE_MAX, "the NCCL transport is not built yet");
    return BRG_ERR_UNSUPPORTED;
}

extern "C" brg__transport *brg__nccl_endpoint(brg__nccl_fabric *f, int rank) {
    (void)f;
    (void)rank;
    return NULL;
}

extern "C" void brg__nccl_fabric_destroy(brg__nccl_fabric *f) { (void)f; }
