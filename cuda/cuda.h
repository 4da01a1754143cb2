/* CUDA backend: kernels and launchers. Internal. Every launcher takes device pointers and a stream,
 * checks its launch, and returns a brg_status with a message in msg (BRG_ERROR_MESSAGE_MAX bytes). */
#ifndef BRIGADE_CUDA_H
#define BRIGADE_CUDA_H

#include <stdint.h>

#include "brigade/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of CUDA devices the runtime sees; 0 when there is no driver or no device (never an error). */
int brg__cuda_device_count(void);

/* AdamW on n fp32 elements on `stream` (a cudaStream_t, NULL for the default stream); the same update as
 * the CPU backend's brg__cpu_adamw. */
brg_status brg__cuda_adamw(float *param, const float *grad, float *m, float *v, int64_t n, float lr, float beta1,
                           float beta2, float eps, float weight_decay, int step, void *stream, char *msg);

/* Device memory helpers for tests and the runtime. */
brg_status brg__cuda_malloc(void **ptr, size_t bytes, char *msg);
void brg__cuda_free(void *ptr);
brg_status brg__cuda_copy_to_device(void *dst, const void *src, size_t bytes, char *msg);
brg_status brg__cuda_copy_to_host(void *dst, const void *src, size_t bytes, char *msg);

#ifdef __cplusplus
}
#endif
#endif
