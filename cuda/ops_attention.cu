// Causal multi-head self-attention (GPT-2) on a fused qkv input, fused as FlashAttention-2 (Dao, 2023) is:
// no T x T matrix is ever written to memory.
//
// qkv (B, T, 3C) holds q, k and v side by side; head h reads columns [h hs, (h+1) hs) of each. aux keeps
// one fp32 per query row, the log-sum-exp of its scaled scores, lse (B, NH, T), as the CPU backend's
// attention does: memory O(T) per head from forward to backward.
//
// Forward: a block takes 64 query rows of one (b, h) and walks the key tiles of 64 up to its last row,
// with q, k and v tiles in shared memory (fp32, whatever the activation type: bf16 inputs, fp32
// accumulation). Each warp owns 8 query rows; lane l the keys l and l + 32 of a tile for the scores and
// the columns l + 32 u of the output. The running max m and sum l of each row are updated tile after
// tile (online softmax: what was accumulated is rescaled by exp(m_old - m_new)); the output is acc / l.
// engine/cpu/attention_tiled.c is this algorithm in plain C, tested against the CPU attention.
//
// Backward, with D = rowsum(dout * out) per row (a small kernel first) and the probabilities recomputed,
// p = exp(s - lse), ds = p (dp - D), dp = dout v^T, in two kernels so that every sum has one owner and a
// fixed order (no atomics; the same bits on every run):
//   dq: a block per 64 query rows walks the key tiles, dq += scale ds k;
//   dk, dv: a block per 64 key rows walks the query tiles from its own, dv += p^T dout, dk += scale ds^T q.
// Both accumulate into din (din += gradient), as every kernel does.
//
// The head size is a template parameter HS in {32, 64, 128} (the smallest at least hs; tiles are zero
// past hs); larger heads are refused.
//
// Two sets of kernels run this algorithm. On a bf16 backend the products go through the tensor cores
// (WMMA 16 x 16 x 16 bf16 fragments, fp32 accumulation): 4 warps per block, each owning 16 of the 64
// rows; a warp's scores land in shared memory (fp32), the element-wise steps (masks, online softmax,
// ds) run there, a lane per half row, and the probabilities or ds go back to the tensor cores as bf16
// (as FlashAttention-2 rounds them), against accumulators kept in shared memory. The fp32 backend, and a
// bf16 one with BRG_CUDA_ATTENTION=simt in its environment, run the SIMT kernels: fp32 FMAs, 8 warps of
// 8 rows, every operand fp32 in shared memory. The gpu suite checks both against the CPU.
#include <cmath>
#include <mma.h>
#include <type_traits>

#include "backend.cuh"

#define FA_TILE 64                        /* rows a block owns, and rows of the tiles it walks */
#define FA_WARPS 8                        /* warps per block */
#define FA_WARP_ROWS (FA_TILE / FA_WARPS) /* 8 rows per warp */
#define FA_THREADS (32 * FA_WARPS)
#define FA_MAX_HEAD 128

/* ---- device helpers ---- */

// Rows [row0, row0 + FA_TILE) of a (rows_total, ld) matrix, columns [0, hs), into a tile of row stride
// HS + 1 (the + 1 keeps lanes reading one column of different rows on different banks); zero past the
// matrix and past hs.
template <typename T, int HS>
__device__ __forceinline__ void load_tile(float *dst, const T *src, int64_t ld, int64_t row0, int64_t rows_total, int hs) {
    for (int i = threadIdx.x; i < FA_TILE * HS; i += FA_THREADS) {
        int r = i / HS, c = i % HS;
        float v = 0.0f;
        if (row0 + r < rows_total && c < hs) v = brg__to_float(src[(row0 + r) * ld + c]);
        dst[r * (HS + 1) + c] = v;
    }
}

// s[r][u] = a_row(warp's row r) . b_row(lane + 32 u), over HS columns: the warp's 8 rows of tile a against
// the 64 rows of tile b.
template <int HS>
__device__ __forceinline__ void tile_dots(float s[FA_WARP_ROWS][2], const float *a, const float *b, int warp, int lane) {
#pragma unroll
    for (int r = 0; r < FA_WARP_ROWS; r++) s[r][0] = s[r][1] = 0.0f;
    const float *a0 = a + warp * FA_WARP_ROWS * (HS + 1);
    const float *b0 = b + lane * (HS + 1), *b1 = b + (lane + 32) * (HS + 1);
#pragma unroll 4
    for (int c = 0; c < HS; c++) {
        float x0 = b0[c], x1 = b1[c];
#pragma unroll
        for (int r = 0; r < FA_WARP_ROWS; r++) {
            float y = a0[r * (HS + 1) + c];
            s[r][0] = fmaf(y, x0, s[r][0]);
            s[r][1] = fmaf(y, x1, s[r][1]);
        }
    }
}

// acc[r][u] += sum_j w[r][j] m[j][lane + 32 u], j over the 64 rows of tile m; w: the warp's (8, FA_TILE)
// weights in shared memory.
template <int HS>
__device__ __forceinline__ void tile_accumulate(float acc[FA_WARP_ROWS][HS / 32], const float *w, const float *m,
                                                int lane) {
    for (int j = 0; j < FA_TILE; j++) {
        float x[HS / 32];
#pragma unroll
        for (int u = 0; u < HS / 32; u++) x[u] = m[j * (HS + 1) + lane + 32 * u];
#pragma unroll
        for (int r = 0; r < FA_WARP_ROWS; r++) {
            float y = w[r * FA_TILE + j];
#pragma unroll
            for (int u = 0; u < HS / 32; u++) acc[r][u] = fmaf(y, x[u], acc[r][u]);
        }
    }
}

template <int HS> __host__ __device__ constexpr size_t tile_floats() { return (size_t)FA_TILE * (HS + 1); }

/* ---- kernels ---- */

// grid (query blocks, NH, B); shared: q, k, v tiles and the warps' probabilities (FA_TILE x FA_TILE).
template <typename T, int HS>
__global__ void __launch_bounds__(FA_THREADS)
    flash_forward_kernel(const T *qkv, T *out, float *lse, int64_t seq, int64_t C, int heads, int hs, float scale) {
    extern __shared__ float smem[];
    float *qs = smem, *ks = qs + tile_floats<HS>(), *vs = ks + tile_floats<HS>(), *ps = vs + tile_floats<HS>();
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int64_t q0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * FA_TILE; // the longest rows first
    int h = blockIdx.y;
    int64_t b = blockIdx.z;
    const T *base = qkv + b * seq * 3 * C + (int64_t)h * hs; // q of row 0; k at + C, v at + 2C
    load_tile<T, HS>(qs, base, 3 * C, q0, seq, hs);
    float m[FA_WARP_ROWS], l[FA_WARP_ROWS], acc[FA_WARP_ROWS][HS / 32];
#pragma unroll
    for (int r = 0; r < FA_WARP_ROWS; r++) {
        m[r] = -INFINITY, l[r] = 0.0f;
#pragma unroll
        for (int u = 0; u < HS / 32; u++) acc[r][u] = 0.0f;
    }
    float *pw = ps + warp * FA_WARP_ROWS * FA_TILE;
    int64_t end = q0 + FA_TILE < seq ? q0 + FA_TILE : seq; /* keys [0, end) */
    for (int64_t k0 = 0; k0 < end; k0 += FA_TILE) {
        __syncthreads(); /* the previous tiles are read */
        load_tile<T, HS>(ks, base + C, 3 * C, k0, seq, hs);
        load_tile<T, HS>(vs, base + 2 * C, 3 * C, k0, seq, hs);
        __syncthreads();
        float s[FA_WARP_ROWS][2];
        tile_dots<HS>(s, qs, ks, warp, lane);
#pragma unroll
        for (int r = 0; r < FA_WARP_ROWS; r++) {
            int64_t t = q0 + warp * FA_WARP_ROWS + r;
            float x[2], p[2];
#pragma unroll
            for (int u = 0; u < 2; u++) {
                int64_t j = k0 + lane + 32 * u;
                x[u] = j <= t && j < seq ? s[r][u] * scale : -INFINITY;
            }
            /* Every tile walked holds key k0 <= q0 <= t: the max is finite from the first tile on. */
            float m_new = fmaxf(m[r], brg__warp_max(fmaxf(x[0], x[1])));
            float rescale = expf(m[r] - m_new); /* 0 on the first tile */
            p[0] = expf(x[0] - m_new), p[1] = expf(x[1] - m_new);
            l[r] = l[r] * rescale + brg__warp_sum(p[0] + p[1]);
            m[r] = m_new;
#pragma unroll
            for (int u = 0; u < HS / 32; u++) acc[r][u] *= rescale;
            pw[r * FA_TILE + lane] = p[0];
            pw[r * FA_TILE + lane + 32] = p[1];
        }
        __syncwarp();
        tile_accumulate<HS>(acc, pw, vs, lane);
    }
#pragma unroll
    for (int r = 0; r < FA_WARP_ROWS; r++) {
        int64_t t = q0 + warp * FA_WARP_ROWS + r;
        if (t >= seq) continue;
        float inv = 1.0f / l[r];
        T *o = out + (b * seq + t) * C + (int64_t)h * hs;
#pragma unroll
        for (int u = 0; u < HS / 32; u++) {
            int c = lane + 32 * u;
            if (c < hs) o[c] = brg__from_float<T>(acc[r][u] * inv);
        }
        if (lane == 0) lse[((b * heads + h) * seq) + t] = m[r] + logf(l[r]);
    }
}

// D (B, NH, T) = rowsum(dout * out) of each head's row; a warp per (b, t, h).
template <typename T>
__global__ void flash_rowdot_kernel(float *D, const T *dout, const T *out, int64_t batch, int64_t seq, int64_t C,
                                    int heads, int hs) {
    int64_t row = (int64_t)blockIdx.x * FA_WARPS + threadIdx.x / 32; // (b, t, h) in memory order
    int lane = threadIdx.x % 32;
    if (row >= batch * seq * heads) return;
    int h = (int)(row % heads);
    int64_t bt = row / heads, b = bt / seq, t = bt % seq;
    const T *g = dout + bt * C + (int64_t)h * hs, *o = out + bt * C + (int64_t)h * hs;
    float acc = 0.0f;
    for (int c = lane; c < hs; c += 32) acc = fmaf(brg__to_float(g[c]), brg__to_float(o[c]), acc);
    acc = brg__warp_sum(acc);
    if (lane == 0) D[(b * heads + h) * seq + t] = acc;
}

// dq of 64 query rows; grid (query blocks, NH, B); shared: q, dout, k, v tiles and the warps' ds.
template <typename T, int HS>
__global__ void __launch_bounds__(FA_THREADS)
    flash_backward_dq_kernel(const T *qkv, const T *dout, const float *lse, const float *D, T *dqkv, int64_t seq,
                             int64_t C, int heads, int hs, float scale, int fresh) {
    extern __shared__ float smem[];
    float *qs = smem, *dos = qs + tile_floats<HS>(), *ks = dos + tile_floats<HS>(), *vs = ks + tile_floats<HS>();
    float *ps = vs + tile_floats<HS>();
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int64_t q0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * FA_TILE;
    int h = blockIdx.y;
    int64_t b = blockIdx.z;
    const T *base = qkv + b * seq * 3 * C + (int64_t)h * hs;
    load_tile<T, HS>(qs, base, 3 * C, q0, seq, hs);
    load_tile<T, HS>(dos, dout + b * seq * C + (int64_t)h * hs, C, q0, seq, hs);
    const float *lse_bh = lse + (b * heads + h) * seq, *D_bh = D + (b * heads + h) * seq;
    float row_lse[FA_WARP_ROWS], row_D[FA_WARP_ROWS], acc[FA_WARP_ROWS][HS / 32];
#pragma unroll
    for (int r = 0; r < FA_WARP_ROWS; r++) {
        int64_t t = q0 + warp * FA_WARP_ROWS + r;
        row_lse[r] = t < seq ? lse_bh[t] : 0.0f;
        row_D[r] = t < seq ? D_bh[t] : 0.0f;
#pragma unroll
        for (int u = 0; u < HS / 32; u++) acc[r][u] = 0.0f;
    }
    float *pw = ps + warp * FA_WARP_ROWS * FA_TILE;
    int64_t end = q0 + FA_TILE < seq ? q0 + FA_TILE : seq;
    for (int64_t k0 = 0; k0 < end; k0 += FA_TILE) {
        __syncthreads();
        load_tile<T, HS>(ks, base + C, 3 * C, k0, seq, hs);
        load_tile<T, HS>(vs, base + 2 * C, 3 * C, k0, seq, hs);
        __syncthreads();
        float s[FA_WARP_ROWS][2], dp[FA_WARP_ROWS][2];
        tile_dots<HS>(s, qs, ks, warp, lane);
        tile_dots<HS>(dp, dos, vs, warp, lane);
#pragma unroll
        for (int r = 0; r < FA_WARP_ROWS; r++) {
            int64_t t = q0 + warp * FA_WARP_ROWS + r;
#pragma unroll
            for (int u = 0; u < 2; u++) {
                int64_t j = k0 + lane + 32 * u;
                float p = j <= t && t < seq ? expf(s[r][u] * scale - row_lse[r]) : 0.0f;
                pw[r * FA_TILE + lane + 32 * u] = p * (dp[r][u] - row_D[r]);
            }
        }
        __syncwarp();
        tile_accumulate<HS>(acc, pw, ks, lane);
        __syncwarp(); /* ds read before the next tile's */
    }
#pragma unroll
    for (int r = 0; r < FA_WARP_ROWS; r++) {
        int64_t t = q0 + warp * FA_WARP_ROWS + r;
        if (t >= seq) continue;
        T *dq = dqkv + (b * seq + t) * 3 * C + (int64_t)h * hs;
#pragma unroll
        for (int u = 0; u < HS / 32; u++) {
            int c = lane + 32 * u;
            if (c < hs) dq[c] = brg__from_float<T>((fresh ? 0.0f : brg__to_float(dq[c])) + scale * acc[r][u]);
        }
    }
}

// dk and dv of 64 key rows; grid (key blocks, NH, B); shared: k, v tiles (the block's), q, dout tiles (walked),
// the warps' weights, and the walked rows' lse and D.
template <typename T, int HS>
__global__ void __launch_bounds__(FA_THREADS)
    flash_backward_dkdv_kernel(const T *qkv, const T *dout, const float *lse, const float *D, T *dqkv, int64_t seq,
                               int64_t C, int heads, int hs, float scale, int fresh) {
    extern __shared__ float smem[];
    float *ks = smem, *vs = ks + tile_floats<HS>(), *qs = vs + tile_floats<HS>(), *dos = qs + tile_floats<HS>();
    float *ps = dos + tile_floats<HS>(), *lse_s = ps + FA_TILE * FA_TILE, *D_s = lse_s + FA_TILE;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    int64_t k0 = (int64_t)blockIdx.x * FA_TILE; // the first blocks see the most queries: they start first
    int h = blockIdx.y;
    int64_t b = blockIdx.z;
    const T *base = qkv + b * seq * 3 * C + (int64_t)h * hs;
    const T *dout_b = dout + b * seq * C + (int64_t)h * hs;
    load_tile<T, HS>(ks, base + C, 3 * C, k0, seq, hs);
    load_tile<T, HS>(vs, base + 2 * C, 3 * C, k0, seq, hs);
    const float *lse_bh = lse + (b * heads + h) * seq, *D_bh = D + (b * heads + h) * seq;
    float dk[FA_WARP_ROWS][HS / 32], dv[FA_WARP_ROWS][HS / 32];
#pragma unroll
    for (int r = 0; r < FA_WARP_ROWS; r++)
#pragma unroll
        for (int u = 0; u < HS / 32; u++) dk[r][u] = dv[r][u] = 0.0f;
    float *pw = ps + warp * FA_WARP_ROWS * FA_TILE;
    for (int64_t q0 = k0; q0 < seq; q0 += FA_TILE) { /* causal: queries from the block's first key on */
        __syncthreads();
        load_tile<T, HS>(qs, base, 3 * C, q0, seq, hs);
        load_tile<T, HS>(dos, dout_b, C, q0, seq, hs);
        if (threadIdx.x < FA_TILE) {
            int64_t i = q0 + threadIdx.x;
            lse_s[threadIdx.x] = i < seq ? lse_bh[i] : 0.0f;
            D_s[threadIdx.x] = i < seq ? D_bh[i] : 0.0f;
        }
        __syncthreads();
        float s[FA_WARP_ROWS][2], dp[FA_WARP_ROWS][2], ds[FA_WARP_ROWS][2];
        tile_dots<HS>(s, ks, qs, warp, lane);  /* s[r][u]: key row r of the warp, query lane + 32 u */
        tile_dots<HS>(dp, vs, dos, warp, lane);
#pragma unroll
        for (int r = 0; r < FA_WARP_ROWS; r++) {
            int64_t j = k0 + warp * FA_WARP_ROWS + r;
#pragma unroll
            for (int u = 0; u < 2; u++) {
                int ii = lane + 32 * u;
                int64_t i = q0 + ii;
                float p = i >= j && i < seq && j < seq ? expf(s[r][u] * scale - lse_s[ii]) : 0.0f;
                ds[r][u] = p * (dp[r][u] - D_s[ii]);
                pw[r * FA_TILE + ii] = p;
            }
        }
        __syncwarp();
        tile_accumulate<HS>(dv, pw, dos, lane); /* dv += p^T dout */
        __syncwarp();
#pragma unroll
        for (int r = 0; r < FA_WARP_ROWS; r++) {
            pw[r * FA_TILE + lane] = ds[r][0];
            pw[r * FA_TILE + lane + 32] = ds[r][1];
        }
        __syncwarp();
        tile_accumulate<HS>(dk, pw, qs, lane); /* dk += ds^T q (scaled below) */
    }
#pragma unroll
    for (int r = 0; r < FA_WARP_ROWS; r++) {
        int64_t j = k0 + warp * FA_WARP_ROWS + r;
        if (j >= seq) continue;
        T *dkr = dqkv + (b * seq + j) * 3 * C + C + (int64_t)h * hs, *dvr = dkr + C;
#pragma unroll
        for (int u = 0; u < HS / 32; u++) {
            int c = lane + 32 * u;
            if (c >= hs) continue;
            dkr[c] = brg__from_float<T>((fresh ? 0.0f : brg__to_float(dkr[c])) + scale * dk[r][u]);
            dvr[c] = brg__from_float<T>((fresh ? 0.0f : brg__to_float(dvr[c])) + dv[r][u]);
        }
    }
}

/* ---- tensor-core kernels (bf16) ---- */

namespace wm = nvcuda::wmma;

#define TC_WARPS 4
#define TC_THREADS (32 * TC_WARPS)
#define TC_LDW (FA_TILE + 8) /* bf16 weights (probabilities, ds): row stride, a multiple of 8 */
#define TC_LDS (FA_TILE + 4) /* fp32 scores: row stride, a multiple of 4 */

template <int HS> struct tc_layout {
    static constexpr int LDT = HS + 8; /* bf16 tiles (q, k, v, dout) */
    static constexpr int LDO = HS + 4; /* fp32 accumulators (o, dq, dk, dv) */
    static constexpr size_t TILE = (size_t)FA_TILE * LDT * sizeof(brg__bf16);
    static constexpr size_t SCORES = (size_t)FA_TILE * TC_LDS * sizeof(float);
    static constexpr size_t WEIGHTS = (size_t)FA_TILE * TC_LDW * sizeof(brg__bf16);
    static constexpr size_t ACC = (size_t)FA_TILE * LDO * sizeof(float);
    /* forward: q, k, v, scores, probabilities, o; dq: q, dout, k, v, scores, dp, ds, dq;
     * dk/dv: k, v, q, dout, scores, dp, weights, dk, dv, the walked rows' lse and D */
    static constexpr size_t FORWARD = 3 * TILE + SCORES + WEIGHTS + ACC;
    static constexpr size_t DQ = 4 * TILE + 2 * SCORES + WEIGHTS + ACC;
    static constexpr size_t DKDV = 4 * TILE + 2 * SCORES + WEIGHTS + 2 * ACC + 2 * FA_TILE * sizeof(float);
};
/* Every region's size is a multiple of 128 bytes, so every fragment pointer stays 32-byte aligned. */
static_assert(tc_layout<32>::TILE % 128 == 0 && tc_layout<64>::TILE % 128 == 0 && tc_layout<128>::TILE % 128 == 0,
              "tile alignment");
static_assert(tc_layout<32>::ACC % 128 == 0 && tc_layout<64>::ACC % 128 == 0 && tc_layout<128>::ACC % 128 == 0,
              "accumulator alignment");
static_assert(tc_layout<64>::SCORES % 128 == 0 && tc_layout<64>::WEIGHTS % 128 == 0, "score alignment");

// Rows [row0, row0 + FA_TILE) of a bf16 (rows_total, ld) matrix, columns [0, hs), into a tile of row stride
// HS + 8; zero past the matrix and past hs.
template <int HS>
__device__ __forceinline__ void tc_load(brg__bf16 *dst, const brg__bf16 *src, int64_t ld, int64_t row0,
                                        int64_t rows_total, int hs) {
    if (hs == HS && ld % 8 == 0 && (uintptr_t)src % 16 == 0) { /* whole rows of 16-byte vectors (GPT-2's heads) */
        for (int i = threadIdx.x; i < FA_TILE * HS / 8; i += TC_THREADS) {
            int r = i / (HS / 8), c = i % (HS / 8) * 8;
            uint4 v = make_uint4(0, 0, 0, 0);
            if (row0 + r < rows_total) v = *(const uint4 *)(src + (row0 + r) * ld + c);
            *(uint4 *)(dst + r * tc_layout<HS>::LDT + c) = v; /* rows of (HS + 8) x 2 bytes: 16-byte aligned */
        }
        return;
    }
    for (int i = threadIdx.x; i < FA_TILE * HS; i += TC_THREADS) {
        int r = i / HS, c = i % HS;
        brg__bf16 v = __float2bfloat16(0.0f);
        if (row0 + r < rows_total && c < hs) v = src[(row0 + r) * ld + c];
        dst[r * tc_layout<HS>::LDT + c] = v;
    }
}

// s (16 x 64, fp32, row stride TC_LDS) = a (16 x HS) b^T, b (64 x HS): a warp's 16 rows against a tile.
template <int HS> __device__ __forceinline__ void warp_abt(float *s, const brg__bf16 *a, const brg__bf16 *b) {
    constexpr int LDT = tc_layout<HS>::LDT;
#pragma unroll
    for (int n = 0; n < FA_TILE / 16; n++) {
        wm::fragment<wm::accumulator, 16, 16, 16, float> acc;
        wm::fill_fragment(acc, 0.0f);
#pragma unroll
        for (int k = 0; k < HS / 16; k++) {
            wm::fragment<wm::matrix_a, 16, 16, 16, brg__bf16, wm::row_major> fa;
            wm::fragment<wm::matrix_b, 16, 16, 16, brg__bf16, wm::col_major> fb; /* b's rows as columns: b^T */
            wm::load_matrix_sync(fa, a + k * 16, LDT);
            wm::load_matrix_sync(fb, b + n * 16 * LDT + k * 16, LDT);
            wm::mma_sync(acc, fa, fb, acc);
        }
        wm::store_matrix_sync(s + n * 16, acc, TC_LDS, wm::mem_row_major);
    }
}

// o (16 x HS, fp32, row stride HS + 4) += w (16 x 64, bf16, row stride TC_LDW) m (64 x HS, a tile).
template <int HS> __device__ __forceinline__ void warp_acc(float *o, const brg__bf16 *w, const brg__bf16 *m) {
    constexpr int LDT = tc_layout<HS>::LDT, LDO = tc_layout<HS>::LDO;
#pragma unroll
    for (int n = 0; n < HS / 16; n++) {
        wm::fragment<wm::accumulator, 16, 16, 16, float> acc;
        wm::load_matrix_sync(acc, o + n * 16, LDO, wm::mem_row_major);
#pragma unroll
        for (int k = 0; k < FA_TILE / 16; k++) {
            wm::fragment<wm::matrix_a, 16, 16, 16, brg__bf16, wm::row_major> fa;
            wm::fragment<wm::matrix_b, 16, 16, 16, brg__bf16, wm::row_major> fb;
            wm::load_matrix_sync(fa, w + k * 16, TC_LDW);
            wm::load_matrix_sync(fb, m + k * 16 * LDT + n * 16, LDT);
            wm::mma_sync(acc, fa, fb, acc);
        }
        wm::store_matrix_sync(o + n * 16, acc, LDO, wm::mem_row_major);
    }
}

template <int HS> __device__ __forceinline__ void tc_zero(float *acc) {
    for (int i = threadIdx.x; i < FA_TILE * tc_layout<HS>::LDO; i += TC_THREADS) acc[i] = 0.0f;
}

// The element-wise steps: lane l holds row l / 2 of its warp's 16 and half l % 2 of the 64 columns.
#define TC_HALF (FA_TILE / 2)

template <int HS>
__global__ void __launch_bounds__(TC_THREADS)
    tc_forward_kernel(const brg__bf16 *qkv, brg__bf16 *out, float *lse, int64_t seq, int64_t C, int heads, int hs,
                      float scale) {
    typedef tc_layout<HS> L;
    extern __shared__ __align__(128) unsigned char tc_smem[];
    brg__bf16 *qs = (brg__bf16 *)tc_smem, *ks = (brg__bf16 *)(tc_smem + L::TILE),
              *vs = (brg__bf16 *)(tc_smem + 2 * L::TILE);
    float *S = (float *)(tc_smem + 3 * L::TILE);
    brg__bf16 *P = (brg__bf16 *)(tc_smem + 3 * L::TILE + L::SCORES);
    float *O = (float *)(tc_smem + 3 * L::TILE + L::SCORES + L::WEIGHTS);
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
    int64_t q0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * FA_TILE;
    int h = blockIdx.y;
    int64_t b = blockIdx.z, t = q0 + warp * 16 + r;
    const brg__bf16 *base = qkv + b * seq * 3 * C + (int64_t)h * hs;
    tc_load<HS>(qs, base, 3 * C, q0, seq, hs);
    tc_zero<HS>(O);
    float *sw = S + warp * 16 * TC_LDS, *ow = O + warp * 16 * L::LDO;
    brg__bf16 *pw = P + warp * 16 * TC_LDW;
    float *srow = sw + r * TC_LDS + half * TC_HALF, *orow = ow + r * L::LDO + half * (HS / 2);
    brg__bf16 *prow = pw + r * TC_LDW + half * TC_HALF;
    float m = -INFINITY, l = 0.0f; /* the row's running max and sum; both lanes of the row hold them */
    int64_t end = q0 + FA_TILE < seq ? q0 + FA_TILE : seq;
    for (int64_t k0 = 0; k0 < end; k0 += FA_TILE) {
        __syncthreads();
        tc_load<HS>(ks, base + C, 3 * C, k0, seq, hs);
        tc_load<HS>(vs, base + 2 * C, 3 * C, k0, seq, hs);
        __syncthreads();
        warp_abt<HS>(sw, qs + warp * 16 * L::LDT, ks);
        __syncwarp();
        float mx = -INFINITY;
        for (int j = 0; j < TC_HALF; j++) {
            int64_t key = k0 + half * TC_HALF + j;
            float x = key <= t && key < seq ? srow[j] * scale : -INFINITY;
            srow[j] = x;
            mx = fmaxf(mx, x);
        }
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1)); /* every tile holds key k0 <= t: finite */
        float m_new = fmaxf(m, mx), rescale = expf(m - m_new), sum = 0.0f;
        for (int j = 0; j < TC_HALF; j++) {
            float p = expf(srow[j] - m_new);
            sum += p;
            prow[j] = __float2bfloat16(p);
        }
        sum += __shfl_xor_sync(0xffffffffu, sum, 1); /* a + b on one lane, b + a on the other: the same bits */
        l = l * rescale + sum;
        m = m_new;
        for (int c = 0; c < HS / 2; c++) orow[c] *= rescale;
        __syncwarp();
        warp_acc<HS>(ow, pw, vs);
    }
    __syncwarp();
    if (t >= seq) return;
    float inv = 1.0f / l;
    brg__bf16 *o = out + (b * seq + t) * C + (int64_t)h * hs;
    for (int c = 0; c < HS / 2; c++) {
        int col = half * (HS / 2) + c;
        if (col < hs) o[col] = __float2bfloat16(orow[c] * inv);
    }
    if (half == 0) lse[(b * heads + h) * seq + t] = m + logf(l);
}

// The backward kernels' shared memory: four bf16 tiles, the warps' scores and dp (fp32), their weights
// (bf16), then the accumulators (dq; or dk and dv) and the walked rows' lse and D (dk/dv only).
template <int HS> struct tc_backward_smem {
    brg__bf16 *tile[4];
    float *S, *DP;
    brg__bf16 *W;
    float *acc[2], *lse_s, *D_s;
};

template <int HS> __device__ __forceinline__ tc_backward_smem<HS> tc_backward_carve(unsigned char *smem) {
    typedef tc_layout<HS> L;
    tc_backward_smem<HS> m;
    for (int i = 0; i < 4; i++) m.tile[i] = (brg__bf16 *)(smem + i * L::TILE);
    unsigned char *p = smem + 4 * L::TILE;
    m.S = (float *)p, m.DP = (float *)(p + L::SCORES);
    m.W = (brg__bf16 *)(p + 2 * L::SCORES);
    p += 2 * L::SCORES + L::WEIGHTS;
    m.acc[0] = (float *)p, m.acc[1] = (float *)(p + L::ACC);
    m.lse_s = (float *)(p + 2 * L::ACC), m.D_s = m.lse_s + FA_TILE;
    return m;
}

template <int HS>
__global__ void __launch_bounds__(TC_THREADS)
    tc_backward_dq_kernel(const brg__bf16 *qkv, const brg__bf16 *dout, const float *lse, const float *D,
                          brg__bf16 *dqkv, int64_t seq, int64_t C, int heads, int hs, float scale, int fresh) {
    typedef tc_layout<HS> L;
    extern __shared__ __align__(128) unsigned char tc_smem[];
    tc_backward_smem<HS> sm = tc_backward_carve<HS>(tc_smem); /* DQ bytes: no acc[1], lse_s, D_s */
    brg__bf16 *qs = sm.tile[0], *dos = sm.tile[1], *ks = sm.tile[2], *vs = sm.tile[3];
    float *S = sm.S, *DP = sm.DP, *A = sm.acc[0];
    brg__bf16 *W = sm.W;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
    int64_t q0 = (int64_t)(gridDim.x - 1 - blockIdx.x) * FA_TILE;
    int h = blockIdx.y;
    int64_t b = blockIdx.z, t = q0 + warp * 16 + r;
    const brg__bf16 *base = qkv + b * seq * 3 * C + (int64_t)h * hs;
    tc_load<HS>(qs, base, 3 * C, q0, seq, hs);
    tc_load<HS>(dos, dout + b * seq * C + (int64_t)h * hs, C, q0, seq, hs);
    tc_zero<HS>(A);
    float row_lse = t < seq ? lse[(b * heads + h) * seq + t] : 0.0f, row_D = t < seq ? D[(b * heads + h) * seq + t] : 0.0f;
    float *sw = S + warp * 16 * TC_LDS, *dpw = DP + warp * 16 * TC_LDS, *aw = A + warp * 16 * L::LDO;
    brg__bf16 *ww = W + warp * 16 * TC_LDW;
    int64_t end = q0 + FA_TILE < seq ? q0 + FA_TILE : seq;
    for (int64_t k0 = 0; k0 < end; k0 += FA_TILE) {
        __syncthreads();
        tc_load<HS>(ks, base + C, 3 * C, k0, seq, hs);
        tc_load<HS>(vs, base + 2 * C, 3 * C, k0, seq, hs);
        __syncthreads();
        warp_abt<HS>(sw, qs + warp * 16 * L::LDT, ks);   /* s = q k^T */
        warp_abt<HS>(dpw, dos + warp * 16 * L::LDT, vs); /* dp = dout v^T */
        __syncwarp();
        for (int j = 0; j < TC_HALF; j++) {
            int col = half * TC_HALF + j;
            int64_t key = k0 + col;
            float p = key <= t && t < seq ? expf(sw[r * TC_LDS + col] * scale - row_lse) : 0.0f;
            ww[r * TC_LDW + col] = __float2bfloat16(p * (dpw[r * TC_LDS + col] - row_D));
        }
        __syncwarp();
        warp_acc<HS>(aw, ww, ks); /* dq += ds k */
    }
    __syncwarp();
    if (t >= seq) return;
    brg__bf16 *dq = dqkv + (b * seq + t) * 3 * C + (int64_t)h * hs;
    const float *arow = aw + r * L::LDO + half * (HS / 2);
    for (int c = 0; c < HS / 2; c++) {
        int col = half * (HS / 2) + c;
        if (col < hs) dq[col] = __float2bfloat16((fresh ? 0.0f : __bfloat162float(dq[col])) + scale * arow[c]);
    }
}

/* FRESH a template parameter here: as a runtime flag it costs this kernel a spill (ptxas, sm_90). */
template <int HS, bool FRESH>
__global__ void __launch_bounds__(TC_THREADS)
    tc_backward_dkdv_kernel(const brg__bf16 *qkv, const brg__bf16 *dout, const float *lse, const float *D,
                            brg__bf16 *dqkv, int64_t seq, int64_t C, int heads, int hs, float scale) {
    typedef tc_layout<HS> L;
    extern __shared__ __align__(128) unsigned char tc_smem[];
    tc_backward_smem<HS> sm = tc_backward_carve<HS>(tc_smem);
    brg__bf16 *ks = sm.tile[0], *vs = sm.tile[1], *qs = sm.tile[2], *dos = sm.tile[3];
    float *S = sm.S, *DP = sm.DP, *DK = sm.acc[0], *DV = sm.acc[1], *lse_s = sm.lse_s, *D_s = sm.D_s;
    brg__bf16 *W = sm.W;
    int warp = threadIdx.x / 32, lane = threadIdx.x % 32, r = lane / 2, half = lane % 2;
    int64_t k0 = (int64_t)blockIdx.x * FA_TILE;
    int h = blockIdx.y;
    int64_t b = blockIdx.z, j = k0 + warp * 16 + r; /* this lane's key row */
    const brg__bf16 *base = qkv + b * seq * 3 * C + (int64_t)h * hs;
    const brg__bf16 *dout_b = dout + b * seq * C + (int64_t)h * hs;
    const float *lse_bh = lse + (b * heads + h) * seq, *D_bh = D + (b * heads + h) * seq;
    tc_load<HS>(ks, base + C, 3 * C, k0, seq, hs);
    tc_load<HS>(vs, base + 2 * C, 3 * C, k0, seq, hs);
    tc_zero<HS>(DK);
    tc_zero<HS>(DV);
    float *sw = S + warp * 16 * TC_LDS, *dpw = DP + warp * 16 * TC_LDS;
    float *dkw = DK + warp * 16 * L::LDO, *dvw = DV + warp * 16 * L::LDO;
    brg__bf16 *ww = W + warp * 16 * TC_LDW;
    for (int64_t q0 = k0; q0 < seq; q0 += FA_TILE) {
        __syncthreads();
        tc_load<HS>(qs, base, 3 * C, q0, seq, hs);
        tc_load<HS>(dos, dout_b, C, q0, seq, hs);
        if (threadIdx.x < FA_TILE) {
            int64_t i = q0 + threadIdx.x;
            lse_s[threadIdx.x] = i < seq ? lse_bh[i] : 0.0f;
            D_s[threadIdx.x] = i < seq ? D_bh[i] : 0.0f;
        }
        __syncthreads();
        warp_abt<HS>(sw, ks + warp * 16 * L::LDT, qs);  /* s^T = k q^T: key rows, query columns */
        warp_abt<HS>(dpw, vs + warp * 16 * L::LDT, dos); /* dp^T = v dout^T */
        __syncwarp();
        for (int jj = 0; jj < TC_HALF; jj++) {
            int col = half * TC_HALF + jj;
            int64_t i = q0 + col;
            float p = i >= j && i < seq && j < seq ? expf(sw[r * TC_LDS + col] * scale - lse_s[col]) : 0.0f;
            sw[r * TC_LDS + col] = p * (dpw[r * TC_LDS + col] - D_s[col]); /* ds^T, kept for dk */
            ww[r * TC_LDW + col] = __float2bfloat16(p);
        }
        __syncwarp();
        warp_acc<HS>(dvw, ww, dos); /* dv += p^T dout */
        __syncwarp();
        for (int jj = 0; jj < TC_HALF; jj++) {
            int col = half * TC_HALF + jj;
            ww[r * TC_LDW + col] = __float2bfloat16(sw[r * TC_LDS + col]);
        }
        __syncwarp();
        warp_acc<HS>(dkw, ww, qs); /* dk += ds^T q */
    }
    __syncwarp();
    if (j >= seq) return;
    brg__bf16 *dk = dqkv + (b * seq + j) * 3 * C + C + (int64_t)h * hs, *dv = dk + C;
    const float *dkrow = dkw + r * L::LDO + half * (HS / 2), *dvrow = dvw + r * L::LDO + half * (HS / 2);
    for (int c = 0; c < HS / 2; c++) {
        int col = half * (HS / 2) + c;
        if (col >= hs) continue;
        dk[col] = __float2bfloat16((FRESH ? 0.0f : __bfloat162float(dk[col])) + scale * dkrow[c]);
        dv[col] = __float2bfloat16((FRESH ? 0.0f : __bfloat162float(dv[col])) + dvrow[c]);
    }
}

/* ---- launchers ---- */

typedef struct attention_dims {
    int64_t batch, seq, channels, heads, head_size; /* B, T, C, NH, hs */
} attention_dims;

/* Shared memory of each kernel, in floats: forward 3 tiles and the weights; backward 4 tiles, the weights
 * (and dk, dv's lse and D). */
template <int HS> static size_t forward_shared() { return (3 * tile_floats<HS>() + FA_TILE * FA_TILE) * sizeof(float); }
template <int HS> static size_t backward_shared() {
    return (4 * tile_floats<HS>() + FA_TILE * FA_TILE + 2 * FA_TILE) * sizeof(float);
}

/* Above 48 KiB a kernel must ask for its dynamic shared memory (per device, so on every launch). */
template <typename K> static cudaError_t allow_shared(K kernel, size_t bytes) {
    return cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes);
}

static dim3 fa_grid(const attention_dims *d) {
    return dim3((unsigned)((d->seq + FA_TILE - 1) / FA_TILE), (unsigned)d->heads, (unsigned)d->batch);
}

template <typename T, int HS>
static brg_status forward_launch(brg__cuda_ctx *c, const attention_dims *d, const T *qkv, T *out, float *lse, char *msg) {
    size_t shared = forward_shared<HS>();
    BRG__CUDA_CHECK(allow_shared(flash_forward_kernel<T, HS>, shared), msg);
    flash_forward_kernel<T, HS><<<fa_grid(d), FA_THREADS, shared, c->stream>>>(
        qkv, out, lse, d->seq, d->channels, (int)d->heads, (int)d->head_size, 1.0f / sqrtf((float)d->head_size));
    BRG__LAUNCH_CHECK("flash_forward", msg);
    return BRG_OK;
}

template <typename T, int HS>
static brg_status backward_launch(brg__cuda_ctx *c, const attention_dims *d, const T *qkv, const T *out,
                                  const T *dout, const float *lse, float *D, T *dqkv, int fresh, char *msg) {
    int64_t rows = d->batch * d->seq * d->heads;
    flash_rowdot_kernel<T><<<(unsigned)((rows + FA_WARPS - 1) / FA_WARPS), FA_THREADS, 0, c->stream>>>(
        D, dout, out, d->batch, d->seq, d->channels, (int)d->heads, (int)d->head_size);
    BRG__LAUNCH_CHECK("flash_rowdot", msg);
    size_t shared = backward_shared<HS>();
    float scale = 1.0f / sqrtf((float)d->head_size);
    BRG__CUDA_CHECK(allow_shared(flash_backward_dq_kernel<T, HS>, shared), msg);
    flash_backward_dq_kernel<T, HS><<<fa_grid(d), FA_THREADS, shared, c->stream>>>(
        qkv, dout, lse, D, dqkv, d->seq, d->channels, (int)d->heads, (int)d->head_size, scale, fresh);
    BRG__LAUNCH_CHECK("flash_backward_dq", msg);
    BRG__CUDA_CHECK(allow_shared(flash_backward_dkdv_kernel<T, HS>, shared), msg);
    flash_backward_dkdv_kernel<T, HS><<<fa_grid(d), FA_THREADS, shared, c->stream>>>(
        qkv, dout, lse, D, dqkv, d->seq, d->channels, (int)d->heads, (int)d->head_size, scale, fresh);
    BRG__LAUNCH_CHECK("flash_backward_dkdv", msg);
    return BRG_OK;
}

template <int HS>
static brg_status tc_forward_launch(brg__cuda_ctx *c, const attention_dims *d, const brg__bf16 *qkv, brg__bf16 *out,
                                    float *lse, char *msg) {
    size_t shared = tc_layout<HS>::FORWARD;
    BRG__CUDA_CHECK(allow_shared(tc_forward_kernel<HS>, shared), msg);
    tc_forward_kernel<HS><<<fa_grid(d), TC_THREADS, shared, c->stream>>>(
        qkv, out, lse, d->seq, d->channels, (int)d->heads, (int)d->head_size, 1.0f / sqrtf((float)d->head_size));
    BRG__LAUNCH_CHECK("tc_forward", msg);
    return BRG_OK;
}

template <int HS>
static brg_status tc_backward_launch(brg__cuda_ctx *c, const attention_dims *d, const brg__bf16 *qkv,
                                     const brg__bf16 *out, const brg__bf16 *dout, const float *lse, float *D,
                                     brg__bf16 *dqkv, int fresh, char *msg) {
    int64_t rows = d->batch * d->seq * d->heads;
    flash_rowdot_kernel<brg__bf16><<<(unsigned)((rows + FA_WARPS - 1) / FA_WARPS), FA_THREADS, 0, c->stream>>>(
        D, dout, out, d->batch, d->seq, d->channels, (int)d->heads, (int)d->head_size);
    BRG__LAUNCH_CHECK("flash_rowdot", msg);
    float scale = 1.0f / sqrtf((float)d->head_size);
    BRG__CUDA_CHECK(allow_shared(tc_backward_dq_kernel<HS>, tc_layout<HS>::DQ), msg);
    tc_backward_dq_kernel<HS><<<fa_grid(d), TC_THREADS, tc_layout<HS>::DQ, c->stream>>>(
        qkv, dout, lse, D, dqkv, d->seq, d->channels, (int)d->heads, (int)d->head_size, scale, fresh);
    BRG__LAUNCH_CHECK("tc_backward_dq", msg);
    if (fresh) {
        BRG__CUDA_CHECK(allow_shared(tc_backward_dkdv_kernel<HS, true>, tc_layout<HS>::DKDV), msg);
        tc_backward_dkdv_kernel<HS, true><<<fa_grid(d), TC_THREADS, tc_layout<HS>::DKDV, c->stream>>>(
            qkv, dout, lse, D, dqkv, d->seq, d->channels, (int)d->heads, (int)d->head_size, scale);
    } else {
        BRG__CUDA_CHECK(allow_shared(tc_backward_dkdv_kernel<HS, false>, tc_layout<HS>::DKDV), msg);
        tc_backward_dkdv_kernel<HS, false><<<fa_grid(d), TC_THREADS, tc_layout<HS>::DKDV, c->stream>>>(
            qkv, dout, lse, D, dqkv, d->seq, d->channels, (int)d->heads, (int)d->head_size, scale);
    }
    BRG__LAUNCH_CHECK("tc_backward_dkdv", msg);
    return BRG_OK;
}

/* The tensor-core kernels for a bf16 backend, unless it was made with BRG_CUDA_ATTENTION=simt. */
static bool use_tensor_cores(const brg__cuda_ctx *c) { return c->act == BRG__CUDA_BF16 && !c->attention_simt; }

/* ---- op entry points ---- */

static brg_status attention_dims_get(const brg__op_call *call, attention_dims *d) {
    const brg_tensor *qkv = call->op->inputs[0]; // (B, T, 3C)
    d->batch = brg__cuda_dim(qkv, 0, call->batch);
    d->seq = brg__cuda_dim(qkv, 1, call->batch);
    d->channels = brg__cuda_dim(qkv, 2, call->batch) / 3;
    d->heads = call->op->heads;
    d->head_size = d->heads > 0 ? d->channels / d->heads : 0;
    if (d->heads <= 0 || d->head_size * d->heads != d->channels ||
        3 * d->channels != brg__cuda_dim(qkv, 2, call->batch))
        return BRG__OP_FAIL(call, BRG_ERR_SHAPE, "%lld channels do not split into 3 x %lld heads",
                            (long long)brg__cuda_dim(qkv, 2, call->batch), (long long)d->heads);
    if (d->head_size > FA_MAX_HEAD)
        return BRG__OP_FAIL(call, BRG_ERR_UNSUPPORTED, "head size %lld: the fused attention kernel takes at most %d",
                            (long long)d->head_size, FA_MAX_HEAD);
    if (d->seq > (int64_t)FA_TILE * 0x7fffffff || d->batch > 65535 || d->heads > 65535)
        return BRG__OP_FAIL(call, BRG_ERR_UNSUPPORTED, "%lld samples x %lld heads x %lld rows pass the kernel's grid",
                            (long long)d->batch, (long long)d->heads, (long long)d->seq);
    return BRG_OK;
}

template <typename T> static brg_status forward_typed(brg__cuda_ctx *c, const brg__op_call *call) {
    attention_dims d;
    BRG__CHECK(attention_dims_get(call, &d));
    if (d.batch == 0 || d.seq == 0) return BRG_OK;
    const void *qkv_v;
    BRG__CHECK(brg__cuda_operand(c, call, 0, &qkv_v));
    const T *qkv = (const T *)qkv_v; // (B, T, 3C)
    T *out = (T *)call->out;         // (B, T, C)
    float *lse = call->aux;          // (B, NH, T)
    if constexpr (std::is_same<T, brg__bf16>::value) {
        if (use_tensor_cores(c)) {
            if (d.head_size <= 32) return tc_forward_launch<32>(c, &d, qkv, out, lse, call->msg);
            if (d.head_size <= 64) return tc_forward_launch<64>(c, &d, qkv, out, lse, call->msg);
            return tc_forward_launch<128>(c, &d, qkv, out, lse, call->msg);
        }
    }
    if (d.head_size <= 32) return forward_launch<T, 32>(c, &d, qkv, out, lse, call->msg);
    if (d.head_size <= 64) return forward_launch<T, 64>(c, &d, qkv, out, lse, call->msg);
    return forward_launch<T, 128>(c, &d, qkv, out, lse, call->msg);
}

template <typename T> static brg_status backward_typed(brg__cuda_ctx *c, const brg__op_call *call) {
    attention_dims d;
    BRG__CHECK(attention_dims_get(call, &d));
    if (brg__cuda_grad_type(c, call, 0) != c->act)
        return BRG__OP_FAIL(call, BRG_ERR_UNSUPPORTED, "%s", "the input must be an activation");
    if (d.batch == 0 || d.seq == 0) return BRG_OK;
    const void *qkv_v;
    BRG__CHECK(brg__cuda_operand(c, call, 0, &qkv_v));
    const T *qkv = (const T *)qkv_v;        // (B, T, 3C)
    const T *out = (const T *)call->out;    // (B, T, C), forward's output
    const T *dout = (const T *)call->dout;  // (B, T, C)
    const float *lse = call->aux;           // (B, NH, T)
    T *dqkv = (T *)call->din[0];            // (B, T, 3C)
    int fresh = (call->din_fresh & 1u) != 0; // dqkv written (0 + the gradient), not read
    float *D = (float *)brg__cuda_workspace(c, (size_t)(d.batch * d.heads * d.seq) * sizeof(float), call->msg);
    if (!D) return BRG_ERR_OUT_OF_MEMORY;
    if constexpr (std::is_same<T, brg__bf16>::value) {
        if (use_tensor_cores(c)) {
            if (d.head_size <= 32) return tc_backward_launch<32>(c, &d, qkv, out, dout, lse, D, dqkv, fresh, call->msg);
            if (d.head_size <= 64) return tc_backward_launch<64>(c, &d, qkv, out, dout, lse, D, dqkv, fresh, call->msg);
            return tc_backward_launch<128>(c, &d, qkv, out, dout, lse, D, dqkv, fresh, call->msg);
        }
    }
    if (d.head_size <= 32) return backward_launch<T, 32>(c, &d, qkv, out, dout, lse, D, dqkv, fresh, call->msg);
    if (d.head_size <= 64) return backward_launch<T, 64>(c, &d, qkv, out, dout, lse, D, dqkv, fresh, call->msg);
    return backward_launch<T, 128>(c, &d, qkv, out, dout, lse, D, dqkv, fresh, call->msg);
}

brg_status brg__cuda_attention_forward(brg__cuda_ctx *c, const brg__op_call *call) {
    return c->act == BRG__CUDA_BF16 ? forward_typed<brg__bf16>(c, call) : forward_typed<float>(c, call);
}

brg_status brg__cuda_attention_backward(brg__cuda_ctx *c, const brg__op_call *call) {
    if (!call->din[0]) return BRG_OK;
    return c->act == BRG__CUDA_BF16 ? backward_typed<brg__bf16>(c, call) : backward_typed<float>(c, call);
}
