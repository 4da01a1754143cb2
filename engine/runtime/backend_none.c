/* Stand-ins for backends this build does not have. */
#include "backend.h"
#include "brigade_config.h"
#include "transport/transport.h"

#if !BRG_HAVE_CUDA
brg_status brg__backend_cuda_create(brg__backend **out, int device, int bf16, char *msg) {
    (void)out;
    (void)device;
    (void)bf16;
    return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_UNSUPPORTED,
                            "this brigade was built without CUDA (configure with -Dcuda=enabled where the CUDA "
                            "toolkit is installed)");
}

brg_status brg__nccl_fabric_create(brg__nccl_fabric **out, int ranks, const int *devices, double timeout_seconds,
                                   char *msg) {
    (void)out;
    (void)ranks;
    (void)devices;
    (void)timeout_seconds;
    return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_UNSUPPORTED,
                            "this brigade was built without CUDA and NCCL (configure with -Dcuda=enabled where the "
                            "CUDA toolkit and NCCL are installed)");
}

brg_status brg__nccl_fabric_create_rank(brg__nccl_fabric **out, int rank, int ranks, int device, brg__bcast_fn bcast,
                                        void *bcast_ctx, double timeout_seconds, char *msg) {
    (void)out;
    (void)rank;
    (void)ranks;
    (void)device;
    (void)bcast;
    (void)bcast_ctx;
    (void)timeout_seconds;
    return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_UNSUPPORTED,
                            "this brigade was built without CUDA and NCCL (configure with -Dcuda=enabled where the "
                            "CUDA toolkit and NCCL are installed)");
}

brg_status brg__nccl_fabric_attach(brg__nccl_fabric *f, int rank, struct brg__backend *be, char *msg) {
    (void)f;
    (void)rank;
    (void)be;
    return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_UNSUPPORTED, "this brigade was built without NCCL");
}

brg__transport *brg__nccl_endpoint(brg__nccl_fabric *f, int rank) {
    (void)f;
    (void)rank;
    return NULL;
}

void brg__nccl_fabric_destroy(brg__nccl_fabric *f) { (void)f; }
#endif
