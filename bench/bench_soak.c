/* A long run that must hold its memory flat: the small GPT through a 4-stage 1F1B pipeline (threads) for
 * STEPS steps, printing every REPORT steps the process's resident size (/proc/self/statm), the bytes the
 * backends hold at the step's end (parameters, gradients, optimizer state) and the step's peak (with the
 * activations in flight), and at the end the largest change of each after the first step. A leak of a few
 * bytes per step shows as a resident size that keeps rising. Figures only: nothing is asserted.
 *   bench_soak [STEPS] [REPORT] [MODEL_SPEC]   (default 10000, 1000, gpt:layers=8,hidden=64,heads=4,vocab=64,seq=32) */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "brigade.h"

/* Resident bytes of this process, or -1. */
static long long resident_bytes(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long long pages_total = 0, pages_resident = -1;
    if (!f) return -1;
    if (fscanf(f, "%lld %lld", &pages_total, &pages_resident) != 2) pages_resident = -1;
    fclose(f);
    return pages_resident < 0 ? -1 : pages_resident * sysconf(_SC_PAGESIZE);
}

typedef struct range {
    long long low, high;
} range;

static void widen(range *r, long long v) {
    if (v < r->low) r->low = v;
    if (v > r->high) r->high = v;
}

static double spread_percent(const range *r) { return r->low > 0 ? 100.0 * (double)(r->high - r->low) / (double)r->low : 0.0; }

int main(int argc, char **argv) {
    long steps = argc > 1 ? atol(argv[1]) : 10000;
    long report = argc > 2 ? atol(argv[2]) : 1000;
    const char *spec = argc > 3 ? argv[3] : "gpt:layers=8,hidden=64,heads=4,vocab=64,seq=32";
    if (steps < 2 || report < 1) {
        fprintf(stderr, "usage: bench_soak [STEPS >= 2] [REPORT >= 1] [MODEL_SPEC]\n");
        return 2;
    }
    brg_error err = {0};
    brg_model_config cfg;
    brg_graph *g = NULL;
    brg_data *d = NULL;
    brg_trainer *t = NULL;
    brg_train_options o = BRG_TRAIN_OPTIONS_INIT;
    o.stages = 4;
    o.schedule = BRG_SCHEDULE_1F1B;
    o.micro_batch = 4;
    o.micro_batches = 8;
    o.blas_threads = 1;
    o.lr = 1e-3f;
    if (brg_model_parse(spec, &cfg, &err) != BRG_OK || brg_model_build(&cfg, &g, &err) != BRG_OK ||
        brg_data_synthetic_create(&d, cfg.vocab, cfg.seq, 1, &err) != BRG_OK || brg_trainer_create(&t, g, &o, &err) != BRG_OK) {
        fprintf(stderr, "bench_soak: %s\n", err.message);
        brg_data_destroy(d);
        brg_graph_destroy(g);
        return 1;
    }
    printf("bench_soak: %s, 4-stage 1F1B, micro-batch %lld x %lld, %ld steps (scans for NaN every %lld steps)\n", spec,
           (long long)o.micro_batch, (long long)o.micro_batches, steps, (long long)o.nan_check_every);
    printf("%8s %10s %14s %14s %14s\n", "step", "loss", "resident", "held", "step peak");
    range rss = {1LL << 62, 0}, held = {1LL << 62, 0}, peak = {1LL << 62, 0};
    long long rss_first = 0;
    int rc = 0;
    for (long s = 1; s <= steps; s++) {
        brg_step_stats st;
        if (brg_trainer_step(t, d, &st) != BRG_OK) {
            fprintf(stderr, "bench_soak: step %ld: %s\n", s, brg_trainer_last_error(t));
            rc = 1;
            break;
        }
        long long r = resident_bytes(), h = brg_trainer_memory_bytes(t), p = st.peak_bytes;
        if (s == 1) rss_first = r;
        if (s >= 2) { /* after warm-up: the first step allocates what every later one reuses */
            widen(&rss, r);
            widen(&held, h);
            widen(&peak, p);
        }
        if (s == 1 || s % report == 0) printf("%8ld %10.4f %14lld %14lld %14lld\n", s, st.loss, r, h, p);
    }
    if (rc == 0)
        printf("after step 1 (resident %lld): resident %lld .. %lld (%.2f%%), held %lld .. %lld (%.2f%%), step peak "
               "%lld .. %lld (%.2f%%)\n",
               rss_first, rss.low, rss.high, spread_percent(&rss), held.low, held.high, spread_percent(&held), peak.low,
               peak.high, spread_percent(&peak));
    brg_trainer_destroy(t);
    brg_data_destroy(d);
    brg_graph_destroy(g);
    return rc;
}
