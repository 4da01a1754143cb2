/* Profiles (partitioner/profile.c): any bytes as a profile file for brg_profile_load; what loads is read
 * back, layer by layer, at recorded and unrecorded micro-batch sizes. */
#include "brigade.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = brg_fuzz_file(data, size);
    if (!path) return 0;
    brg_profile *p = NULL;
    brg_error err = {0};
    brg_status s = brg_profile_load(path, &p, &err);
    brg_fuzz_check_error(s, err.message, "brg_profile_load");
    if (s != BRG_OK) return 0;
    (void)brg_profile_device_model(p);
    (void)brg_profile_model_fingerprint(p);
    (void)brg_profile_transfer_latency(p);
    static const int64_t sizes[] = {1, 3, 64, INT64_C(1) << 40};
    for (int l = 0; l < brg_profile_layer_count(p) && l < 64; l++)
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            double f, bi, bw;
            (void)brg_profile_get(p, l, sizes[k], &f, &bi, &bw);
        }
    brg_profile_destroy(p);
    return 0;
}
