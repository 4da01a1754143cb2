/* Checkpoint throughput: saves a model's state (parameters and AdamW moments, fp32) and resumes it,
 * and prints the bytes on disk and the write and read rates beside `dd` writing and reading as many
 * bytes to the same directory (fsync'ed, page cache dropped where allowed). Asserts nothing.
 *   build-release/bench/bench_checkpoint [model] [dir]      (default gpt2-small, /tmp) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "brigade.h"
#include "brigade/checkpoint.h"

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static long long du_bytes(const char *dir) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "du -sb '%s' | cut -f1", dir);
    FILE *p = popen(cmd, "r");
    long long v = -1;
    if (p && fscanf(p, "%lld", &v) != 1) v = -1;
    if (p) pclose(p);
    return v;
}

static void drop_caches(void) {
    sync();
    FILE *f = fopen("/proc/sys/vm/drop_caches", "w"); /* root only; otherwise reads may come from the cache */
    if (f) {
        fputs("3\n", f);
        fclose(f);
    }
}

static double run_seconds(const char *cmd) {
    double t0 = now_seconds();
    if (system(cmd) != 0) return -1;
    return now_seconds() - t0;
}

int main(int argc, char **argv) {
    const char *spec = argc > 1 ? argv[1] : "gpt2-small";
    const char *base = argc > 2 ? argv[2] : "/tmp";
    brg_model_config cfg;
    brg_graph *g = NULL;
    brg_error err = {0};
    brg_trainer *t = NULL;
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    o.micro_batch = 1;
    if (brg_model_parse(spec, &cfg, &err) != BRG_OK || brg_model_build(&cfg, &g, &err) != BRG_OK ||
        brg_trainer_create(&t, g, &o, &err) != BRG_OK) {
        fprintf(stderr, "bench_checkpoint: %s\n", err.message);
        return 1;
    }
    char dir[1024], cmd[4096];
    snprintf(dir, sizeof dir, "%s/brigade-bench-checkpoint-%d", base, (int)getpid());
    brg_checkpoint_options co = BRG_CHECKPOINT_OPTIONS_INIT;
    co.model = &cfg;
    double t0 = now_seconds();
    if (brg_checkpoint_save(t, dir, &co, &err) != BRG_OK) {
        fprintf(stderr, "bench_checkpoint: %s\n", err.message);
        return 1;
    }
    double save = now_seconds() - t0;
    long long bytes = du_bytes(dir);
    drop_caches();
    t0 = now_seconds();
    int64_t step = 0;
    if (brg_checkpoint_resume(t, dir, &co, &step, &err) != BRG_OK) {
        fprintf(stderr, "bench_checkpoint: %s\n", err.message);
        return 1;
    }
    double load = now_seconds() - t0;
    long long mib = bytes / (1 << 20) + 1;
    snprintf(cmd, sizeof cmd, "dd if=/dev/zero of='%s/dd.bin' bs=1M count=%lld conv=fsync status=none", dir, mib);
    double dd_write = run_seconds(cmd);
    drop_caches();
    snprintf(cmd, sizeof cmd, "dd if='%s/dd.bin' of=/dev/null bs=1M status=none", dir);
    double dd_read = run_seconds(cmd);
    printf("checkpoint of %s (%lld parameters, fp32 + AdamW m and v) in %s\n", cfg.name,
           (long long)brg_graph_param_count(g), base);
    printf("  on disk: %.1f MiB\n", (double)bytes / (1 << 20));
    printf("  save:   %.3f s, %.2f GB/s   (dd write, fsync: %.2f GB/s)\n", save, (double)bytes / save / 1e9,
           dd_write > 0 ? (double)mib * (1 << 20) / dd_write / 1e9 : 0.0);
    printf("  resume: %.3f s, %.2f GB/s   (dd read: %.2f GB/s)\n", load, (double)bytes / load / 1e9,
           dd_read > 0 ? (double)mib * (1 << 20) / dd_read / 1e9 : 0.0);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "bench_checkpoint: could not remove %s\n", dir);
    brg_trainer_destroy(t);
    brg_graph_destroy(g);
    return 0;
}
