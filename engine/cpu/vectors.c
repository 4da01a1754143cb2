/* Whole-tensor kernels of the backend vtable: zero, accumulate, scale, sum of squares. Zero, accumulate
 * and scale work element by element (any split gives the same result); the sum of squares adds fixed pieces of
 * its input, each in eight double lanes, then the pieces' sums in piece order, so its rounding depends
 * on n alone. */
#include "cpu/kernels.h"

/* At most this many pieces per sum of squares: their sums live on the stack. */
#define SUM_SQUARES_PIECES_MAX 256

typedef struct vector_job {
    float *x;
    const float *y;
    int64_t n, per_piece;
    float factor;
    double *sums; /* one per piece */
} vector_job;

static BRG__CPU_VECTOR_CLONES void accumulate(float *restrict dst, const float *restrict src, int64_t n) {
    for (int64_t i = 0; i < n; i++) dst[i] += src[i];
}

static BRG__CPU_VECTOR_CLONES void scale(float *restrict x, int64_t n, float factor) {
    for (int64_t i = 0; i < n; i++) x[i] *= factor;
}

/* Sum of x[i]^2 in double: eight lanes over [0, n), then a fixed tree. */
static BRG__CPU_VECTOR_CLONES double sum_squares(const float *restrict x, int64_t n) {
    double acc[BRG__CPU_LANES] = {0};
    int64_t i = 0;
    for (; i + BRG__CPU_LANES <= n; i += BRG__CPU_LANES)
        for (int l = 0; l < BRG__CPU_LANES; l++) acc[l] += (double)x[i + l] * (double)x[i + l];
    for (; i < n; i++) acc[i % BRG__CPU_LANES] += (double)x[i] * (double)x[i];
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* Bytes per piece of brg__cpu_zero: clearing is bound by memory bandwidth, so pieces are larger. */
#define ZERO_PIECE_BYTES ((int64_t)1 << 20)

typedef struct zero_job {
    char *p;
    int64_t bytes;
} zero_job;

static void zero_piece(void *ctx, int64_t piece, float *scratch) {
    const zero_job *job = ctx;
    int64_t begin, end;
    brg__cpu_piece_range(piece, ZERO_PIECE_BYTES, job->bytes, &begin, &end);
    memset(job->p + begin, 0, (size_t)(end - begin));
}

void brg__cpu_zero(void *p, size_t bytes) {
    zero_job job = {p, (int64_t)bytes};
    brg__cpu_parallel(brg__cpu_pieces(job.bytes, ZERO_PIECE_BYTES), zero_piece, &job);
}

static void accumulate_piece(void *ctx, int64_t piece, float *scratch) {
    const vector_job *job = ctx;
    int64_t begin, end;
    brg__cpu_piece_range(piece, job->per_piece, job->n, &begin, &end);
    accumulate(job->x + begin, job->y + begin, end - begin);
}

static void scale_piece(void *ctx, int64_t piece, float *scratch) {
    const vector_job *job = ctx;
    int64_t begin, end;
    brg__cpu_piece_range(piece, job->per_piece, job->n, &begin, &end);
    scale(job->x + begin, end - begin, job->factor);
}

static void sum_squares_piece(void *ctx, int64_t piece, float *scratch) {
    const vector_job *job = ctx;
    int64_t begin, end;
    brg__cpu_piece_range(piece, job->per_piece, job->n, &begin, &end);
    job->sums[piece] = sum_squares(job->y + begin, end - begin);
}

void brg__cpu_accumulate(float *dst, const float *src, int64_t n) {
    vector_job job = {.x = dst, .y = src, .n = n, .per_piece = BRG__CPU_PIECE_ELEMENTS};
    brg__cpu_parallel(brg__cpu_pieces(n, job.per_piece), accumulate_piece, &job);
}

void brg__cpu_scale(float *x, int64_t n, float factor) {
    vector_job job = {.x = x, .n = n, .per_piece = BRG__CPU_PIECE_ELEMENTS, .factor = factor};
    brg__cpu_parallel(brg__cpu_pieces(n, job.per_piece), scale_piece, &job);
}

int64_t brg__cpu_sum_squares_piece(int64_t n) {
    /* Whole BRG__CPU_PIECE_ELEMENTS, as many as it takes to stay within SUM_SQUARES_PIECES_MAX pieces. */
    int64_t units = brg__cpu_pieces(n, BRG__CPU_PIECE_ELEMENTS);
    return brg__cpu_pieces(units, SUM_SQUARES_PIECES_MAX) * BRG__CPU_PIECE_ELEMENTS;
}

double brg__cpu_sum_squares(const float *x, int64_t n) {
    if (n <= 0) return 0.0;
    double sums[SUM_SQUARES_PIECES_MAX];
    vector_job job = {.y = x, .n = n, .per_piece = brg__cpu_sum_squares_piece(n), .sums = sums};
    int64_t pieces = brg__cpu_pieces(n, job.per_piece);
    brg__cpu_parallel(pieces, sum_squares_piece, &job);
    double total = 0.0;
    for (int64_t p = 0; p < pieces; p++) total += sums[p];
    return total;
}
