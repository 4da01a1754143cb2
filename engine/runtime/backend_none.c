/* Stand-ins for backends this build does not have. */
#include "backend.h"
#include "brigade_config.h"

#if !BRG_HAVE_CUDA
brg_status brg__backend_cuda_create(brg__backend **out, int device, int bf16, char *msg) {
    (void)out;
    (void)device;
    (void)bf16;
    return brg__message_set(msg, BRG_ERROR_MESSAGE_MAX, BRG_ERR_UNSUPPORTED,
                            "this brigade was built without CUDA (configure with -Dcuda=enabled where the CUDA "
                            "toolkit is installed)");
}
#endif
