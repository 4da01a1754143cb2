/* The safetensors reader (engine/io/safetensors.c): any bytes, opened from memory, every tensor the
 * header describes read as float32 and raw, every metadata entry looked up. */
#include <stdint.h>
#include <stdlib.h>

#include "fuzz.h"
#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    brg__st_file *f = NULL;
    char msg[BRG_ERROR_MESSAGE_MAX] = "";
    brg_status s = brg__st_open_memory(data, size, "fuzz.safetensors", &f, msg);
    brg_fuzz_check_error(s, msg, "brg__st_open_memory");
    if (s != BRG_OK) return 0;
    for (int64_t i = 0; i < brg__st_count(f); i++) {
        const brg__st_tensor *t = brg__st_get(f, i);
        if (t->count > (1 << 20)) continue; /* the header is checked against the data size: never past it */
        float *dst = malloc((size_t)(t->count ? t->count : 1) * sizeof(float));
        void *raw = malloc((size_t)(t->end - t->begin ? t->end - t->begin : 1));
        if (dst) brg__st_read_f32(f, t, dst, t->count, msg);
        if (raw) brg__st_read_raw(f, t, raw, t->end - t->begin, msg);
        free(dst);
        free(raw);
    }
    for (int64_t i = 0; i < brg__st_metadata_count(f); i++) {
        const char *k, *v;
        brg__st_metadata_entry(f, i, &k, &v);
        (void)brg__st_metadata(f, k);
    }
    (void)brg__st_find(f, "a");
    brg__st_close(f);
    return 0;
}
