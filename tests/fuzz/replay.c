/* Replays a fuzz target's corpus without libFuzzer: every file of the directory given as argv[1] goes
 * through the target's LLVMFuzzerTestOneInput once, as a CUnit case of a suite named after the target
 * (argv[2]). Built with each target in the ordinary test build, so that the sanitizers of that build
 * catch a regression on any input that ever crashed, without fuzzing. */
#include <CUnit/CUnit.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "harness.h"

static const char *corpus_dir;

/* The whole file, or NULL (the size in *size). */
static uint8_t *read_input(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t *buf = NULL;
    size_t used = 0, cap = 0;
    for (;;) {
        if (used == cap) {
            cap = cap ? 2 * cap : 4096;
            uint8_t *grown = realloc(buf, cap);
            if (!grown) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = grown;
        }
        size_t n = fread(buf + used, 1, cap - used, f);
        used += n;
        if (n == 0) break;
    }
    fclose(f);
    *size = used;
    return buf;
}

static int by_name(const struct dirent **a, const struct dirent **b) { return strcmp((*a)->d_name, (*b)->d_name); }

static void replay_corpus(void) {
    struct dirent **names = NULL;
    int n = scandir(corpus_dir, &names, NULL, by_name);
    if (n < 0) fprintf(stderr, "replay: cannot list the corpus '%s'\n", corpus_dir);
    CU_ASSERT_FATAL(n >= 0);
    int inputs = 0;
    for (int i = 0; i < n; i++) {
        if (names[i]->d_name[0] != '.') {
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", corpus_dir, names[i]->d_name);
            size_t size = 0;
            uint8_t *data = read_input(path, &size);
            if (!data) fprintf(stderr, "replay: cannot read '%s'\n", path);
            CU_ASSERT(data != NULL);
            if (data) CU_ASSERT(LLVMFuzzerTestOneInput(data, size) == 0);
            free(data);
            inputs++;
        }
        free(names[i]);
    }
    free(names);
    printf("replayed %d inputs of %s\n", inputs, corpus_dir);
    CU_ASSERT(inputs > 0);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s CORPUS_DIR SUITE\n", argv[0]);
        return 2;
    }
    corpus_dir = argv[1];
    static const brg_test_case cases[] = {{"corpus", replay_corpus}, {NULL, NULL}};
    return brg_test_main(1, argv, argv[2], cases);
}
