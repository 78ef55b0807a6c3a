/*
 * conv_im2col.c: the convolution engine behind conv.h: batched im2col + OpenBLAS sgemm for every shape, and
 * direct AVX2 kernels for the stride-1 shapes where im2col wastes most of its time moving data.
 *
 * im2col path. OpenBLAS runs near peak only on fat GEMMs, and a per-image GEMM on CIFAR is skinny
 * (16 x 1024 x 144). With CNHW activations (layout.h) the lowering of a chunk of images is one matrix, so a
 * convolution becomes, per group g (K = C_in/groups*KH*KW, P = H_out*W_out, M = N*P):
 *
 *     forward          y_g[C_out/g, M]  = W_g[C_out/g, K] * col_g[K, M]
 *     backward weights dW_g            += dy_g[C_out/g, M] * col_g^T[M, K]
 *     backward data    dcol_g[K, M]     = W_g^T[K, C_out/g] * dy_g[C_out/g, M],   dx = col2im(dcol)
 *
 * with col[(c*KH + ki)*KW + kj][n*P + ho*W_out + wo] = x[c][n][ho*stride - pad + ki][wo*stride - pad + kj]
 * (zero in the padding). The M columns go in image-aligned chunks so the col workspace stays bounded
 * (conv_tuning.h); a chunk [n0, n1) of y_g is the sub-matrix y + (g*C_out/g)*M + n0*P with leading dimension
 * M, so the GEMM writes straight into the CNHW output, and reads dy the same way in backward. A 1x1 stride-1
 * pad-0 convolution needs no lowering: col is x itself (channel c of the batch is the row x + c*M), so each
 * pass is one GEMM over the whole batch, with no workspace.
 *
 * Direct path (see its section below). For 16..64 channels, im2col + sgemm spends over half its time writing
 * col and re-packing it, since each col element feeds only C_out multiply-adds. A stride-1 convolution of a
 * zero-padded image is an implicit GEMM that reads its "col" straight from the padded image; small AVX2
 * register-tiled kernels then run forward, backward-data (as the forward convolution of dy with the
 * transposed, flipped weights) and backward-weights at 1.5-2x the im2col speed on the CIFAR layers.
 *
 * Threads and determinism: the engine runs from serial code. BLAS is called outside any parallel region
 * (OpenBLAS's OpenMP build then uses the OpenMP pool itself); our loops are "#pragma omp parallel for" over
 * disjoint outputs (rows, planes, tiles), each output summed by one thread in a fixed order, so there are no
 * floating-point races and every result is deterministic for a fixed thread count.
 */
#include "conv.h"
#include "conv_tuning.h"
#include "conv_winograd.h"
#include "check.h"

#include <cblas.h>
#include <stdlib.h>
#include <string.h>

/* ---- tuning -------------------------------------------------------------------------------------------- */

/* Default col-chunk budget, in floats (4 MiB): the col chunk stays within a core's share of the last-level
 * cache while sgemm packs it. Measured with bench_conv --sweep on a 2-core Zen 3 VM: 2-8 MiB chunks beat
 * 32 MiB+ ones (whole-batch lowering) by ~1.3x on the 16-channel layer; within 1-8 MiB the differences were
 * below the machine's noise. See dc_conv_images_per_chunk for the lower bound on columns. */
#define DC_CONV_DEFAULT_CHUNK_FLOATS ((size_t)1 << 20)

/* Fewest GEMM columns per chunk (unless the batch has fewer): every chunk's GEMM re-packs the whole weight
 * matrix (C_out x K), about one cycle per weight, against 2*cols flops per weight, so at >= 1024 columns the
 * packing costs < 2%. Only large-K, small-image layers (512 channels at 7x7) need more than the budget. */
#define DC_CONV_MIN_CHUNK_COLS 1024

/* A tuning value: the one set by the program, else the environment's (read once), else the default. */
typedef struct {
    const char *env_name;
    size_t fallback, set, env;
    int env_read;
} tuning_value;

static size_t tuning_get(tuning_value *t) {
    if (t->set) return t->set;
    if (!t->env_read) {
        t->env_read = 1;
        const char *env = getenv(t->env_name);
        if (env && *env) {
            char *end = NULL;
            unsigned long long v = strtoull(env, &end, 10);
            if (end && *end == '\0' && v > 0) t->env = (size_t)v;
        }
    }
    return t->env ? t->env : t->fallback;
}

static tuning_value chunk_floats = {"DC_CONV_CHUNK_FLOATS", DC_CONV_DEFAULT_CHUNK_FLOATS, 0, 0, 0};
static tuning_value chunk_min_cols = {"DC_CONV_CHUNK_MIN_COLS", DC_CONV_MIN_CHUNK_COLS, 0, 0, 0};

void dc_conv_set_chunk_floats(size_t floats) {
    chunk_floats.set = floats;
}
size_t dc_conv_chunk_floats(void) {
    return tuning_get(&chunk_floats);
}
void dc_conv_set_chunk_min_cols(size_t cols) {
    chunk_min_cols.set = cols;
}
size_t dc_conv_chunk_min_cols(void) {
    return tuning_get(&chunk_min_cols);
}

static int algo_override = -1; /* dc_conv_set_algo; -1 = none */
static int algo_env = -1;      /* DC_CONV_ALGO; -1 = unset */
static int algo_env_read = 0;

void dc_conv_set_algo(dc_conv_algo algo) {
    algo_override = (int)algo;
}

dc_conv_algo dc_conv_get_algo(void) {
    if (algo_override >= 0) return (dc_conv_algo)algo_override;
    if (!algo_env_read) {
        algo_env_read = 1;
        const char *env = getenv("DC_CONV_ALGO");
        if (env && !strcmp(env, "im2col"))
            algo_env = DC_CONV_ALGO_IM2COL;
        else if (env && !strcmp(env, "winograd"))
            algo_env = DC_CONV_ALGO_WINOGRAD;
        else if (env && !strcmp(env, "direct"))
            algo_env = DC_CONV_ALGO_DIRECT;
        else if (env && !strcmp(env, "auto"))
            algo_env = DC_CONV_ALGO_AUTO;
    }
    return algo_env >= 0 ? (dc_conv_algo)algo_env : DC_CONV_ALGO_AUTO;
}

static int direct_algo_enabled(void) {
    return dc_conv_get_algo() != DC_CONV_ALGO_IM2COL;
}

/* 1x1, stride 1, no padding: the col matrix is x itself. */
static int conv_is_pointwise(const dc_conv_shape *s) {
    return s->KH == 1 && s->KW == 1 && s->stride == 1 && s->pad == 0;
}

int dc_conv_images_per_chunk(const dc_conv_shape *s, int N) {
    if (N < 1) return 1;
    if (conv_is_pointwise(s)) return N;
    const size_t P_out = (size_t)s->H_out * s->W_out, per_image = (size_t)s->C_in * s->KH * s->KW * P_out;
    size_t images = dc_conv_chunk_floats() / per_image;
    const size_t min_images = (dc_conv_chunk_min_cols() + P_out - 1) / P_out;
    if (images < min_images) images = min_images;
    if (images < 1) images = 1;
    if (images > (size_t)N) images = (size_t)N;
    return (int)images;
}

/* ---- shape --------------------------------------------------------------------------------------------- */

int dc_conv_shape_init(dc_conv_shape *s, int C_in, int C_out, int KH, int KW, int stride, int pad, int groups,
                       int H_in, int W_in) {
    if (!s) return DC_ERR("core/conv_im2col.c: dc_conv_shape_init: shape pointer is NULL");
    if (C_in < 1 || C_out < 1)
        return DC_ERR("core/conv_im2col.c: conv shape: channels must be >= 1, got C_in=%d C_out=%d", C_in,
                      C_out);
    if (KH < 1 || KW < 1)
        return DC_ERR("core/conv_im2col.c: conv shape: kernel must be >= 1x1, got %dx%d", KH, KW);
    if (stride < 1) return DC_ERR("core/conv_im2col.c: conv shape: stride must be >= 1, got %d", stride);
    if (pad < 0) return DC_ERR("core/conv_im2col.c: conv shape: pad must be >= 0, got %d", pad);
    if (groups < 1) return DC_ERR("core/conv_im2col.c: conv shape: groups must be >= 1, got %d", groups);
    if (C_in % groups || C_out % groups)
        return DC_ERR("core/conv_im2col.c: conv shape: channels must be divisible by groups, got C_in=%d "
                      "C_out=%d groups=%d",
                      C_in, C_out, groups);
    if (H_in < 1 || W_in < 1)
        return DC_ERR("core/conv_im2col.c: conv shape: input size must be >= 1x1, got %dx%d", H_in, W_in);
    /* H_out = floor((H_in + 2*pad - KH) / stride) + 1 needs H_in + 2*pad >= KH (C division truncates toward
     * zero, so test the numerator first). */
    long long h_num = (long long)H_in + 2LL * pad - KH, w_num = (long long)W_in + 2LL * pad - KW;
    if (h_num < 0 || w_num < 0)
        return DC_ERR("core/conv_im2col.c: conv shape: output size <= 0 (input %dx%d, pad %d, kernel %dx%d)",
                      H_in, W_in, pad, KH, KW);
    long long H_out = h_num / stride + 1, W_out = w_num / stride + 1;
    s->C_in = C_in;
    s->C_out = C_out;
    s->KH = KH;
    s->KW = KW;
    s->stride = stride;
    s->pad = pad;
    s->groups = groups;
    s->H_in = H_in;
    s->W_in = W_in;
    s->H_out = (int)H_out;
    s->W_out = (int)W_out;
    return DC_OK;
}

double dc_conv_macs(const dc_conv_shape *s, int N) {
    return (double)N * s->C_out * s->H_out * s->W_out * (double)(s->C_in / s->groups) * s->KH * s->KW;
}

/* Parallel regions only for loops with enough work (elements touched or multiply-adds) to pay for waking the
 * team: tiny convolutions (tests, the last CIFAR stage at small batch) run on the calling thread instead of
 * paying a fork/join, or worse, spinning on a barrier while a descheduled thread catches up on a busy
 * machine. */
#define PAR_WORTH(work) ((work) >= ((int64_t)1 << 16))

/* ---- im2col path: lowering ----------------------------------------------------------------------------- */

/* The output positions o in [lo, hi) whose input position o*stride - pad + k lies inside [0, n_in); the
 * others read padding. */
static inline void valid_range(int n_in, int n_out, int k, int stride, int pad, int *lo, int *hi) {
    int first = pad - k; /* need o*stride >= pad - k */
    int l = first > 0 ? (first + stride - 1) / stride : 0;
    int last = n_in - 1 + pad - k; /* need o*stride <= n_in - 1 + pad - k */
    int h = last < 0 ? 0 : last / stride + 1;
    if (h > n_out) h = n_out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* Copies n floats; for the common widths (multiples of 8) as whole 32-byte blocks, which GCC turns into
 * single AVX moves without the prologue/epilogue of a general vectorised loop (CIFAR rows are 8..32 floats,
 * so per-row overhead, not bandwidth, dominates im2col). */
static inline void copy_floats(float *restrict d, const float *restrict src, int n) {
    if ((n & 7) == 0) {
        for (int i = 0; i < n; i += 8) memcpy(d + i, src + i, 8 * sizeof(float));
    } else {
        for (int i = 0; i < n; i++) d[i] = src[i];
    }
}

/* The KH*KW col rows of one input plane, from a plane that needs no bounds checks: src is [Hs, Ws] and
 * already includes the padding (or pad == 0), so
 *     col[(ki*KW + kj)][ho*W_out + wo] = src[(ho*stride + ki)*Ws + wo*stride + kj].
 * dst points at row (c*KH*KW) of the chunk, image j's segment; consecutive taps are row_stride apart. */
static void im2col_plane(const float *restrict src, int Ws, const dc_conv_shape *s, float *restrict dst,
                         int64_t row_stride) {
    const int KH = s->KH, KW = s->KW, stride = s->stride, H_out = s->H_out, W_out = s->W_out;
    for (int ki = 0; ki < KH; ki++)
        for (int kj = 0; kj < KW; kj++) {
            float *restrict out = dst + (int64_t)(ki * KW + kj) * row_stride;
            for (int ho = 0; ho < H_out; ho++) {
                const float *restrict in = src + (int64_t)(ho * stride + ki) * Ws + kj;
                float *restrict d = out + (int64_t)ho * W_out;
                /* a constant stride 2 vectorises as even-element shuffles instead of gathers */
                if (stride == 1) {
                    copy_floats(d, in, W_out);
                } else if (stride == 2) {
                    for (int wo = 0; wo < W_out; wo++) d[wo] = in[2 * wo];
                } else {
                    for (int wo = 0; wo < W_out; wo++) d[wo] = in[wo * stride];
                }
            }
        }
}

/* One tap row (ki, kj) of one plane read in place with bounds checks: the output positions [hlo, hhi) x
 * [wlo, whi) read inside the input, the others read padding (zero). Used for padded planes too big for the
 * stack buffer of im2col_chunk (the 224x224 stem). */
static void im2col_tap_checked(const float *restrict xp, const dc_conv_shape *s, int ki, int kj,
                               float *restrict out) {
    const int stride = s->stride, pad = s->pad;
    const int H_in = s->H_in, W_in = s->W_in, H_out = s->H_out, W_out = s->W_out;
    int hlo, hhi, wlo, whi;
    valid_range(H_in, H_out, ki, stride, pad, &hlo, &hhi);
    valid_range(W_in, W_out, kj, stride, pad, &wlo, &whi);
    for (int64_t i = 0; i < (int64_t)hlo * W_out; i++) out[i] = 0.0f;
    for (int ho = hlo; ho < hhi; ho++) {
        float *restrict d = out + (int64_t)ho * W_out;
        const float *restrict xrow = xp + (int64_t)(ho * stride - pad + ki) * W_in;
        for (int wo = 0; wo < wlo; wo++) d[wo] = 0.0f;
        if (stride == 2) {
            for (int wo = wlo; wo < whi; wo++) d[wo] = xrow[2 * wo - pad + kj];
        } else {
            for (int wo = wlo; wo < whi; wo++) d[wo] = xrow[wo * stride - pad + kj];
        }
        for (int wo = whi; wo < W_out; wo++) d[wo] = 0.0f;
    }
    for (int64_t i = (int64_t)hhi * W_out; i < (int64_t)H_out * W_out; i++) out[i] = 0.0f;
}

/* Largest padded plane copied to the stack (floats): 64 KiB, e.g. 114x114 (56x56 + pad 1 fits easily). */
#define DC_CONV_PAD_PLANE_MAX 16384

/* col[r][j*P + ho*W_out + wo] for images n0 .. n0+nc-1, r = (c*KH + ki)*KW + kj, col is [C_in*KH*KW, nc*P].
 * Parallel over (channel, image) planes. A plane is first copied, zero-padded, to a small stack buffer so
 * that every tap row is a plain (strided) copy without bounds checks; the plane is then read KH*KW times
 * from L1. */
static void im2col_chunk(const dc_conv_shape *s, int N, int n0, int nc, const float *restrict x,
                         float *restrict col) {
    const int KH = s->KH, KW = s->KW, pad = s->pad, H_in = s->H_in, W_in = s->W_in;
    const int Hp = H_in + 2 * pad, Wp = W_in + 2 * pad;
    const int64_t P_in = (int64_t)H_in * W_in, P_out = (int64_t)s->H_out * s->W_out,
                  cols = (int64_t)nc * P_out;
    if (pad > 0 && (int64_t)Hp * Wp > DC_CONV_PAD_PLANE_MAX) {
        /* big padded planes (the stem: 3 channels of 230x230): parallel over (tap row, image) pairs, which
         * also keeps 2+ threads busy when there are fewer planes than threads */
        const int rows = s->C_in * KH * KW;
#pragma omp parallel for collapse(2) schedule(static) if (PAR_WORTH((int64_t)rows * cols))
        for (int r = 0; r < rows; r++)
            for (int j = 0; j < nc; j++)
                im2col_tap_checked(x + ((int64_t)(r / (KH * KW)) * N + n0 + j) * P_in, s, (r / KW) % KH,
                                   r % KW, col + (int64_t)r * cols + (int64_t)j * P_out);
        return;
    }
#pragma omp parallel for collapse(2) schedule(static) if (PAR_WORTH((int64_t)s->C_in * KH * KW * cols))
    for (int c = 0; c < s->C_in; c++) {
        for (int j = 0; j < nc; j++) {
            const float *xp = x + ((int64_t)c * N + n0 + j) * P_in;
            float *dst = col + (int64_t)c * KH * KW * cols + (int64_t)j * P_out;
            if (pad == 0) {
                im2col_plane(xp, W_in, s, dst, cols);
            } else {
                float xpad[DC_CONV_PAD_PLANE_MAX] __attribute__((aligned(64)));
                for (int i = 0; i < pad * Wp; i++) xpad[i] = 0.0f;
                for (int h = 0; h < H_in; h++) {
                    float *row = xpad + (int64_t)(h + pad) * Wp;
                    for (int i = 0; i < pad; i++) row[i] = row[pad + W_in + i] = 0.0f;
                    for (int i = 0; i < W_in; i++) row[pad + i] = xp[(int64_t)h * W_in + i];
                }
                for (int i = (H_in + pad) * Wp; i < Hp * Wp; i++) xpad[i] = 0.0f;
                im2col_plane(xpad, Wp, s, dst, cols);
            }
        }
    }
}

/* The adjoint of im2col_chunk: dx[c][n0+j] = sum over the KH*KW rows of channel c of dcol scattered back to
 * the input positions they were read from (padding reads are dropped). Overwrites those planes of dx.
 * Parallel over (channel, image) planes, so writes are disjoint and the summation order is fixed. */
static void col2im_chunk(const dc_conv_shape *s, int N, int n0, int nc, const float *restrict dcol,
                         float *restrict dx) {
    const int KH = s->KH, KW = s->KW, stride = s->stride, pad = s->pad;
    const int H_in = s->H_in, W_in = s->W_in, H_out = s->H_out, W_out = s->W_out;
    const int64_t P_in = (int64_t)H_in * W_in, P_out = (int64_t)H_out * W_out, cols = (int64_t)nc * P_out;
    const int C = s->C_in;
#pragma omp parallel for collapse(2) schedule(static) if (PAR_WORTH((int64_t)C * KH * KW * cols))
    for (int c = 0; c < C; c++) {
        for (int j = 0; j < nc; j++) {
            float *restrict dxp = dx + ((int64_t)c * N + n0 + j) * P_in;
            memset(dxp, 0, sizeof(float) * (size_t)P_in);
            for (int ki = 0; ki < KH; ki++) {
                int hlo, hhi;
                valid_range(H_in, H_out, ki, stride, pad, &hlo, &hhi);
                for (int kj = 0; kj < KW; kj++) {
                    int wlo, whi;
                    valid_range(W_in, W_out, kj, stride, pad, &wlo, &whi);
                    const float *restrict src =
                        dcol + ((int64_t)(c * KH + ki) * KW + kj) * cols + (int64_t)j * P_out;
                    for (int ho = hlo; ho < hhi; ho++) {
                        const float *restrict srow = src + (int64_t)ho * W_out;
                        float *restrict drow = dxp + (int64_t)(ho * stride - pad + ki) * W_in + (kj - pad);
                        if (stride == 1) {
                            for (int wo = wlo; wo < whi; wo++) drow[wo] += srow[wo];
                        } else {
                            for (int wo = wlo; wo < whi; wo++) drow[wo * stride] += srow[wo];
                        }
                    }
                }
            }
        }
    }
}

/* ---- direct path (AVX2 + FMA): stride 1, and stride 2 by phases --------------------------------------- */
/*
 * For the small-channel CIFAR layers the im2col path spends more time moving data than multiplying: col is
 * KH*KW times the input, written by im2col and then read and re-packed by sgemm, and each packed element is
 * used only C_out (16..64) times. A stride-1 convolution of a zero-padded image needs no col at all: with
 * the padded planes xp_c[Hp][Wp] of one image and k = (c*KH + ki)*KW + kj,
 *
 *     y[co][ho*W_out + wo] = sum_k w[co][k] * xp_c[(ho + ki)*Wp + wo + kj]
 *                          = sum_k w[co][k] * xp[pos + off[k]]
 *
 * where pos = ho*Wp + wo and off[k] = c*Hp*Wp + ki*Wp + kj: an implicit GEMM whose "col" is read straight
 * from the padded image (in L1/L2), at any 8 consecutive output positions of a row as one vector load.
 *
 *  - forward: tiles of 4 output channels x 3 vectors of 8 positions (12 accumulators); per k, 3 input vector
 *    loads and 4 weight broadcasts (weights packed as [C_out/4][K][4]) feed 12 FMAs.
 *  - backward-data is the same kernel: dx = conv(dy padded by KH-1-pad and KW-1-pad, w transposed to
 *    [C_in][C_out] and flipped in space), a stride-1 convolution with dx as its output.
 *  - backward-weights, dw[co][k] = sum_pos dy[co][pos] * xp[pos + off[k]], as outer products: dy is
 *    transposed to [position][C_out], so 8 output channels are one vector; tiles of 16 channels x 6 k
 *    (12 accumulators) take, per position, 2 vector loads of dy and 6 broadcasts of the input.
 *
 * Stride 2 (forward): the padded image is stored as its 2x2 phases, xq_c[p][q][i][j] = xp_c[2i + p][2j + q],
 * each a plane of Hq x Wq. Then
 *
 *     y[co][ho*W_out + wo] = sum_k w[co][k] * xp_c[(2ho + ki)*Wp + 2wo + kj]
 *                          = sum_k w[co][k] * xq_c[ki%2][kj%2][(ho + ki/2)*Wq + wo + kj/2]
 *
 * the same implicit GEMM with pos = ho*Wq + wo and off[k] pointing into tap k's phase plane: 8 consecutive
 * outputs of a row read 8 consecutive floats of one phase row, so the same kernel runs it, with no wasted
 * multiply. Only the forward pass takes it: backward-data of a stride-2 convolution is not a stride-1
 * convolution of dy, and the backward-weights kernel on phases was slower than im2col on three of the four
 * stride-2 layers measured (docs/PERFORMANCE.md), so both stay on im2col.
 *
 * Used when: stride 1 (or stride 2 and a kernel larger than 1x1: forward only), groups 1, output width a
 * multiple of 8, output channels a multiple of 8 (for backward-data: input width and channels multiples of
 * 8, pad <= KH-1 and KW-1), and the build targets AVX2 and FMA. Everything else takes the im2col path. Each
 * output (and each dw entry) is summed by one thread in a fixed order, so results are deterministic.
 */
#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DC_CONV_HAVE_DIRECT 1
#else
#define DC_CONV_HAVE_DIRECT 0
#endif

/* A convolution of zero-padded planes: the forward one (stride 1 or 2), or the stride-1 transposed one of
 * backward-data. The padded input of one image is stored as [C_in][phases_h][phases_w][Hq][Wq]: its
 * stride x stride phases (only those a tap reads: one per dimension for a 1-wide kernel); for stride 1 one
 * phase, the padded plane itself (Hq = Hp, Wq = Wp). */
typedef struct {
    int C_in, C_out, KH, KW, padH, padW, stride;
    int H_in, W_in;         /* unpadded input */
    int Hp, Wp;             /* padded input */
    int H_out, W_out;       /* (Hp - KH) / stride + 1, (Wp - KW) / stride + 1 */
    int phases_h, phases_w; /* min(stride, KH), min(stride, KW) */
    int Hq, Wq;             /* one phase plane: H_out + (KH - 1) / stride rows, likewise columns */
} direct_geom;

static direct_geom direct_geom_make(int C_in, int C_out, int KH, int KW, int padH, int padW, int stride,
                                    int H_in, int W_in) {
    direct_geom g = {C_in, C_out, KH, KW, padH, padW, stride, H_in, W_in, H_in + 2 * padH, W_in + 2 * padW,
                     0,    0,     0,  0,  0,    0};
    g.H_out = (g.Hp - KH) / stride + 1;
    g.W_out = (g.Wp - KW) / stride + 1;
    g.phases_h = KH < stride ? KH : stride;
    g.phases_w = KW < stride ? KW : stride;
    g.Hq = g.H_out + (KH - 1) / stride;
    g.Wq = g.W_out + (KW - 1) / stride;
    return g;
}

static direct_geom direct_geom_forward(const dc_conv_shape *s) {
    return direct_geom_make(s->C_in, s->C_out, s->KH, s->KW, s->pad, s->pad, s->stride, s->H_in, s->W_in);
}

/* dx = conv(dy, w^T flipped): input dy [C_out, H_out, W_out] padded by K-1-pad, output [C_in, H_in, W_in];
 * only for stride-1 shapes (direct_usable checks). */
static direct_geom direct_geom_backward_data(const dc_conv_shape *s) {
    return direct_geom_make(s->C_out, s->C_in, s->KH, s->KW, s->KH - 1 - s->pad, s->KW - 1 - s->pad, 1,
                            s->H_out, s->W_out);
}

/* Floats of one input channel in the padded buffer (all its phases). */
static int64_t direct_channel_floats(const direct_geom *g) {
    return (int64_t)g->phases_h * g->phases_w * g->Hq * g->Wq;
}

/* Offset of tap k = (c*KH + ki)*KW + kj from an output position's base ho*Wq + wo: channel c, phase
 * (ki % stride, kj % stride), shifted by (ki / stride) rows and kj / stride columns. */
static int direct_tap_offset(const direct_geom *g, int k) {
    const int KK = g->KH * g->KW, c = k / KK, ki = (k % KK) / g->KW, kj = k % g->KW, st = g->stride;
    const int64_t plane = (int64_t)g->Hq * g->Wq;
    return (int)(c * direct_channel_floats(g) + ((ki % st) * g->phases_w + kj % st) * plane +
                 (int64_t)(ki / st) * g->Wq + kj / st);
}

static int direct_usable(const dc_conv_shape *s, const direct_geom *g) {
    if (!DC_CONV_HAVE_DIRECT || !direct_algo_enabled()) return 0;
    if (s->groups != 1 || conv_is_pointwise(s)) return 0;
    /* stride 2 only as the forward geometry (backward-data of a strided convolution is not one), and not for
     * 1x1 kernels: the 1x1 stride-2 shortcuts measured even with im2col (docs/PERFORMANCE.md) */
    if (g->stride != s->stride || (s->stride != 1 && s->stride != 2)) return 0;
    if (s->stride == 2 && s->KH * s->KW == 1) return 0;
    if (g->padH < 0 || g->padW < 0 || g->H_out < 1 || g->W_out < 8) return 0;
    if (g->W_out % 8 || g->C_out % 8) return 0;
    /* offsets into the padded chunk are ints (the chunk is at most max(budget, one image) floats) */
    if (g->C_in * direct_channel_floats(g) > INT32_MAX / 4 || dc_conv_chunk_floats() > INT32_MAX / 4)
        return 0;
    return 1;
}

/* Backward-weights by the direct kernel: stride 1 only (see above). */
static int direct_dw_usable(const dc_conv_shape *s, const direct_geom *forward) {
    return s->stride == 1 && direct_usable(s, forward);
}

static size_t direct_images_per_chunk(const direct_geom *g, int N) {
    size_t per_image = (size_t)(g->C_in * direct_channel_floats(g));
    size_t images = dc_conv_chunk_floats() / per_image;
    if (images < 1) images = 1;
    if (images > (size_t)N) images = (size_t)N;
    return images;
}

/* Workspace of the direct path: [padded chunk | K offsets (ints) | packed weights [C_out/4][K][4]], the
 * weights 64-byte aligned relative to the workspace. */
static size_t direct_pad_floats(const direct_geom *g, int N) {
    return direct_images_per_chunk(g, N) * (size_t)(g->C_in * direct_channel_floats(g));
}
static size_t direct_weights_at(const direct_geom *g, int N) {
    const size_t K = (size_t)g->C_in * g->KH * g->KW;
    return (direct_pad_floats(g, N) + K + 15) / 16 * 16;
}
static size_t direct_workspace_floats(const direct_geom *g, int N) {
    return direct_weights_at(g, N) + (size_t)g->C_out * g->C_in * g->KH * g->KW;
}
static float *direct_weights(const direct_geom *g, int N, float *ws) {
    return ws + direct_weights_at(g, N);
}

#if DC_CONV_HAVE_DIRECT
/* One tile: out[co0 + r][out_off[v] + 0..7] = bias + sum_k wp[k*4 + r] * in[in_off[v] + off[k] + 0..7] for
 * r < 4, v < nv (nv is a compile-time constant at each call site, so acc stays in 4*nv registers). */
static inline __attribute__((always_inline)) void
direct_tile(const int nv, const float *restrict in, const int *restrict in_off, const int *restrict off,
            int K, const float *restrict wp, const float *restrict bias, float *restrict out, int64_t M,
            const int64_t *restrict out_off) {
    __m256 acc[4][3];
#pragma GCC unroll 8
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) acc[r][v] = bias ? _mm256_set1_ps(bias[r]) : _mm256_setzero_ps();
    const float *p[3] = {in + in_off[0], in + in_off[nv > 1 ? 1 : 0], in + in_off[nv > 2 ? 2 : 0]};
    for (int k = 0; k < K; k++) {
        const int o = off[k];
        __m256 xv[3];
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) xv[v] = _mm256_loadu_ps(p[v] + o);
#pragma GCC unroll 8
        for (int r = 0; r < 4; r++) {
            const __m256 wv = _mm256_broadcast_ss(wp + 4 * k + r);
#pragma GCC unroll 8
            for (int v = 0; v < nv; v++) acc[r][v] = _mm256_fmadd_ps(wv, xv[v], acc[r][v]);
        }
    }
#pragma GCC unroll 8
    for (int r = 0; r < 4; r++)
#pragma GCC unroll 8
        for (int v = 0; v < nv; v++) _mm256_storeu_ps(out + r * M + out_off[v], acc[r][v]);
}
#endif

/* wp[b][k][r] = weight of output channel 4b + r at k, for the forward convolution (transpose = 0, the weight
 * is w[co][k] as stored) or for backward-data (transpose = 1: output channel = input channel ci of the
 * original, k = (co*KH + ki)*KW + kj reads w[co][ci][KH-1-ki][KW-1-kj]). */
static void direct_pack_weights(const dc_conv_shape *s, const float *restrict w, int transpose,
                                float *restrict wp) {
    const int KH = s->KH, KW = s->KW, KK = KH * KW;
    const int outs = transpose ? s->C_in : s->C_out, ins = transpose ? s->C_out : s->C_in;
    const int K = ins * KK;
#pragma omp parallel for schedule(static) if (PAR_WORTH((int64_t)outs * K))
    for (int co = 0; co < outs; co++) {
        float *restrict dst = wp + (int64_t)(co / 4) * K * 4 + co % 4;
        for (int k = 0; k < K; k++) {
            float v;
            if (!transpose) {
                v = w[(int64_t)co * K + k];
            } else {
                const int c = k / KK, t = k % KK, ki = t / KW, kj = t % KW;
                v = w[((int64_t)c * s->C_in + co) * KK + (KH - 1 - ki) * KW + (KW - 1 - kj)];
            }
            dst[(int64_t)k * 4] = v;
        }
    }
}

#if DC_CONV_HAVE_DIRECT
static int *direct_offsets(const direct_geom *g, int N, float *ws) {
    return (int *)(ws + direct_pad_floats(g, N));
}

/* Stride 2: images n0 .. n0+nc-1 of in[C_in][N][H_in][W_in] as the phases of their padded planes,
 * pad_buf[nc][C_in][phases_h][phases_w][Hq][Wq] with xq[p][q][i][j] = xp[2i + p][2j + q] (0 in the padding,
 * and in the last row or column of a phase that no tap reads). Parallel over planes. Each phase row is a
 * zero head, a copy of every second input value, and a zero tail, so the copy has no branch per value. */
static void direct_phase_chunk(const direct_geom *g, int N, int n0, int nc, const float *restrict in,
                               float *restrict pad_buf) {
    const int Hq = g->Hq, Wq = g->Wq, H_in = g->H_in, W_in = g->W_in, padW = g->padW;
    const int64_t plane = (int64_t)Hq * Wq, chan = direct_channel_floats(g), P_in = (int64_t)H_in * W_in;
#pragma omp parallel for collapse(2) schedule(static) if (PAR_WORTH((int64_t)nc * g->C_in * chan))
    for (int j = 0; j < nc; j++) {
        for (int c = 0; c < g->C_in; c++) {
            const float *restrict src = in + ((int64_t)c * N + n0 + j) * P_in;
            float *restrict dst = pad_buf + ((int64_t)j * g->C_in + c) * chan;
            for (int q = 0; q < g->phases_w; q++) {
                /* the columns x of phase q that hold input column w = 2x + q - padW, 0 <= w < W_in */
                int x_lo = (padW - q + 1) / 2, x_hi = (W_in - 1 + padW - q) / 2 + 1;
                if (x_lo < 0) x_lo = 0;
                if (x_hi > Wq) x_hi = Wq;
                if (W_in - 1 + padW - q < 0 || x_hi < x_lo) x_hi = x_lo;
                const int w_lo = 2 * x_lo + q - padW;
                for (int p = 0; p < g->phases_h; p++) {
                    float *restrict phase = dst + (p * g->phases_w + q) * plane;
                    for (int i = 0; i < Hq; i++) {
                        float *restrict row = phase + (int64_t)i * Wq;
                        const int h = 2 * i + p - g->padH;
                        if (h < 0 || h >= H_in) {
                            for (int x = 0; x < Wq; x++) row[x] = 0.0f;
                            continue;
                        }
                        const float *restrict from = src + (int64_t)h * W_in + w_lo;
                        for (int x = 0; x < x_lo; x++) row[x] = 0.0f;
                        for (int x = 0; x < x_hi - x_lo; x++) row[x_lo + x] = from[2 * x];
                        for (int x = x_hi; x < Wq; x++) row[x] = 0.0f;
                    }
                }
            }
        }
    }
}

/* Copies images n0 .. n0+nc-1 of in[C_in][N][H_in][W_in] (CNHW) zero-padded to pad_buf[nc][C_in][Hp][Wp],
 * parallel over planes (stride 2: as phases, direct_phase_chunk). Image-major, so one image's channels are
 * one contiguous block for the kernels. */
static void direct_pad_chunk(const direct_geom *g, int N, int n0, int nc, const float *restrict in,
                             float *restrict pad_buf) {
    if (g->stride != 1) {
        direct_phase_chunk(g, N, n0, nc, in, pad_buf);
        return;
    }
    const int Hp = g->Hp, Wp = g->Wp, H_in = g->H_in, W_in = g->W_in, padH = g->padH, padW = g->padW;
    const int64_t plane_p = (int64_t)Hp * Wp, P_in = (int64_t)H_in * W_in;
#pragma omp parallel for collapse(2) schedule(static) if (PAR_WORTH((int64_t)nc * g->C_in * plane_p))
    for (int j = 0; j < nc; j++) {
        for (int c = 0; c < g->C_in; c++) {
            const float *restrict src = in + ((int64_t)c * N + n0 + j) * P_in;
            float *restrict dst = pad_buf + ((int64_t)j * g->C_in + c) * plane_p;
            for (int64_t i = 0; i < (int64_t)padH * Wp; i++) dst[i] = 0.0f;
            for (int h = 0; h < H_in; h++) {
                float *restrict row = dst + (int64_t)(h + padH) * Wp;
                for (int i = 0; i < padW; i++) row[i] = row[padW + W_in + i] = 0.0f;
                copy_floats(row + padW, src + (int64_t)h * W_in, W_in);
            }
            for (int64_t i = (int64_t)(H_in + padH) * Wp; i < plane_p; i++) dst[i] = 0.0f;
        }
    }
}
#endif

/* out[C_out][N][H_out][W_out] = direct convolution of in[C_in][N][H_in][W_in] (CNHW) with packed weights, in
 * image chunks: copy the chunk zero-padded to [nc][C_in][Hp][Wp] (stride 2: its phases), then run the tiles
 * of every image, parallel over (image, tile) pairs (each writes its own outputs). */
static void direct_run(const direct_geom *g, int N, const float *restrict in, const float *restrict wp,
                       const float *restrict bias, float *restrict out, float *restrict ws) {
#if DC_CONV_HAVE_DIRECT
    const int K = g->C_in * g->KH * g->KW;
    const int Wq = g->Wq;
    const int64_t P_out = (int64_t)g->H_out * g->W_out, M = (int64_t)N * P_out;
    const int per_chunk = (int)direct_images_per_chunk(g, N);
    float *pad_buf = ws;
    int *off = direct_offsets(g, N, ws);
    for (int k = 0; k < K; k++) off[k] = direct_tap_offset(g, k);
    const int64_t img_stride = g->C_in * direct_channel_floats(g);
    const int segs_per_image = (int)(P_out / 8), blocks = g->C_out / 4;
    for (int n0 = 0; n0 < N; n0 += per_chunk) {
        const int nc = N - n0 < per_chunk ? N - n0 : per_chunk;
        direct_pad_chunk(g, N, n0, nc, in, pad_buf);
        /* The chunk's 8-wide output segments in order (image, row, column), 3 per tile: tiles may span two
         * images, so small images (8x8: 8 segments) leave no 1- or 2-vector tail tiles. */
        const int64_t segs = (int64_t)nc * segs_per_image, tiles = (segs + 2) / 3;
#pragma omp parallel for schedule(static) if (PAR_WORTH(segs * 8 * g->C_out * K))
        for (int64_t t = 0; t < tiles; t++) {
            const int nv = segs - 3 * t < 3 ? (int)(segs - 3 * t) : 3;
            int in_off[3] = {0, 0, 0};
            int64_t out_off[3] = {0, 0, 0};
            for (int v = 0; v < nv; v++) {
                const int64_t seg = 3 * t + v;
                const int j = (int)(seg / segs_per_image), pos = (int)(seg % segs_per_image) * 8;
                in_off[v] = (int)(j * img_stride + (pos / g->W_out) * Wq + pos % g->W_out);
                out_off[v] = (int64_t)(n0 + j) * P_out + pos;
            }
            for (int b = 0; b < blocks; b++) {
                const float *wb = wp + (int64_t)b * K * 4;
                const float *bb = bias ? bias + 4 * b : NULL;
                float *ob = out + (int64_t)4 * b * M;
                if (nv == 3)
                    direct_tile(3, pad_buf, in_off, off, K, wb, bb, ob, M, out_off);
                else if (nv == 2)
                    direct_tile(2, pad_buf, in_off, off, K, wb, bb, ob, M, out_off);
                else
                    direct_tile(1, pad_buf, in_off, off, K, wb, bb, ob, M, out_off);
            }
        }
    }
#else
    (void)g, (void)N, (void)in, (void)wp, (void)bias, (void)out, (void)ws;
#endif
}

#if DC_CONV_HAVE_DIRECT
/* dyT[p][co] = dy[co*M + col0 + p] for p < cols, co < C (both multiples of 8), by 8x8 register transposes.
 * Parallel over blocks of 8 positions. */
static void transpose_rows_8x8(const float *restrict dy, int64_t M, int C, int64_t col0, int64_t cols,
                               float *restrict dyT) {
#pragma omp parallel for schedule(static) if (PAR_WORTH((int64_t)C * cols))
    for (int64_t p = 0; p < cols; p += 8) {
        for (int c = 0; c < C; c += 8) {
            const float *src = dy + (int64_t)c * M + col0 + p;
            const __m256 r0 = _mm256_loadu_ps(src), r1 = _mm256_loadu_ps(src + M);
            const __m256 r2 = _mm256_loadu_ps(src + 2 * M), r3 = _mm256_loadu_ps(src + 3 * M);
            const __m256 r4 = _mm256_loadu_ps(src + 4 * M), r5 = _mm256_loadu_ps(src + 5 * M);
            const __m256 r6 = _mm256_loadu_ps(src + 6 * M), r7 = _mm256_loadu_ps(src + 7 * M);
            const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
            const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
            const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
            const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
            const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
            const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
            const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
            const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
            float *dst = dyT + p * C + c;
            _mm256_storeu_ps(dst + 0 * C, _mm256_permute2f128_ps(u0, u4, 0x20));
            _mm256_storeu_ps(dst + 1 * C, _mm256_permute2f128_ps(u1, u5, 0x20));
            _mm256_storeu_ps(dst + 2 * C, _mm256_permute2f128_ps(u2, u6, 0x20));
            _mm256_storeu_ps(dst + 3 * C, _mm256_permute2f128_ps(u3, u7, 0x20));
            _mm256_storeu_ps(dst + 4 * C, _mm256_permute2f128_ps(u0, u4, 0x31));
            _mm256_storeu_ps(dst + 5 * C, _mm256_permute2f128_ps(u1, u5, 0x31));
            _mm256_storeu_ps(dst + 6 * C, _mm256_permute2f128_ps(u2, u6, 0x31));
            _mm256_storeu_ps(dst + 7 * C, _mm256_permute2f128_ps(u3, u7, 0x31));
        }
    }
}

/* One backward-weights tile, as outer products: for the 8*nv output channels from co0 (nv vectors) and the
 * nq columns from k0 (both compile-time constants at each call site),
 *     dw[co][k0 + q] += sum over the positions p of images [j0, j1) of dyT[p][co] * img[in_pos(p) + off[q]]
 * Per position: nv vector loads of dyT (8 channels each), nq scalar broadcasts of the input, nv*nq FMAs; the
 * accumulators hold finished sums (vectors along co), so nothing is reduced across lanes. */
static inline __attribute__((always_inline)) void
direct_dw_tile(const int nv, const int nq, const direct_geom *g, const float *restrict pad_buf,
               int64_t img_stride, int j0, int j1, const float *restrict dyT, int C_out,
               const int *restrict off, float *restrict dw, int K) {
    const int W_out = g->W_out, H_out = g->H_out, Wq = g->Wq;
    const int64_t P_out = (int64_t)H_out * W_out;
    __m256 acc[2][6];
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++)
#pragma GCC unroll 8
        for (int q = 0; q < nq; q++) acc[v][q] = _mm256_setzero_ps();
    for (int j = j0; j < j1; j++) {
        const float *restrict img = pad_buf + (int64_t)j * img_stride;
        const float *restrict dp = dyT + (int64_t)j * P_out * C_out;
        for (int ho = 0; ho < H_out; ho++) {
            const float *restrict xrow = img + (int64_t)ho * Wq;
            for (int wo = 0; wo < W_out; wo++) {
                __m256 d[2];
#pragma GCC unroll 8
                for (int v = 0; v < nv; v++) d[v] = _mm256_loadu_ps(dp + 8 * v);
                dp += C_out;
#pragma GCC unroll 8
                for (int q = 0; q < nq; q++) {
                    const __m256 xb = _mm256_broadcast_ss(xrow + wo + off[q]);
#pragma GCC unroll 8
                    for (int v = 0; v < nv; v++) acc[v][q] = _mm256_fmadd_ps(d[v], xb, acc[v][q]);
                }
            }
        }
    }
#pragma GCC unroll 8
    for (int v = 0; v < nv; v++)
#pragma GCC unroll 8
        for (int q = 0; q < nq; q++) {
            float lanes[8];
            _mm256_storeu_ps(lanes, acc[v][q]);
#pragma GCC unroll 8
            for (int l = 0; l < 8; l++) dw[(int64_t)(8 * v + l) * K + q] += lanes[l];
        }
}

/* direct_dw_tile for any (nv, nq): a switch, so that every call has constants. */
static void direct_dw_tile_any(int nv, int nq, const direct_geom *g, const float *pad_buf, int64_t img_stride,
                               int j0, int j1, const float *dyT, int C_out, const int *off, float *dw,
                               int K) {
#define DW_CASE(NV, NQ)                                                                                      \
    case NQ:                                                                                                 \
        direct_dw_tile(NV, NQ, g, pad_buf, img_stride, j0, j1, dyT, C_out, off, dw, K);                      \
        break
    if (nv == 2) {
        switch (nq) {
            DW_CASE(2, 1);
            DW_CASE(2, 2);
            DW_CASE(2, 3);
            DW_CASE(2, 4);
            DW_CASE(2, 5);
            DW_CASE(2, 6);
        }
    } else {
        switch (nq) {
            DW_CASE(1, 1);
            DW_CASE(1, 2);
            DW_CASE(1, 3);
            DW_CASE(1, 4);
            DW_CASE(1, 5);
            DW_CASE(1, 6);
        }
    }
#undef DW_CASE
}
#endif

/* Images per chunk of the direct backward-weights: the padded images plus their transposed dy. */
static size_t direct_dw_images_per_chunk(const direct_geom *g, int N) {
    size_t per_image = (size_t)(g->C_in * direct_channel_floats(g)) + (size_t)g->C_out * g->H_out * g->W_out;
    size_t images = dc_conv_chunk_floats() / per_image;
    if (images < 1) images = 1;
    if (images > (size_t)N) images = (size_t)N;
    return images;
}

/* Its workspace: [padded chunk | transposed dy chunk | K offsets]. */
static size_t direct_dw_workspace_floats(const direct_geom *g, int N) {
    return direct_dw_images_per_chunk(g, N) *
               ((size_t)(g->C_in * direct_channel_floats(g)) + (size_t)g->C_out * g->H_out * g->W_out) +
           (size_t)g->C_in * g->KH * g->KW + 16;
}

/* dw[C_out][K] += dy * x^T for a direct-eligible forward shape, without im2col:
 *     dw[co][k] += sum over images n and output positions p of dy[co][n][p] * xpad_n[in_pos(p) + off[k]].
 * Per chunk of images: copy x zero-padded (as for forward) and dy transposed to [image][position][C_out], so
 * 8 consecutive output channels are one vector; then the tiles of (16 output channels x 6 k) are shared out
 * among the threads, each tile summing outer products over a group of images (~1024 positions: the tile's
 * dyT rows, 64 KiB, stay in L2 while the thread moves on to the next k). Every thread owns the same tiles in
 * every group (schedule(static) over the same iteration space), so each dw entry is written by one thread,
 * in a fixed order: deterministic for a fixed thread count, and no barrier is needed between groups. */
static void direct_backward_weights(const dc_conv_shape *s, int N, const float *restrict x,
                                    const float *restrict dy, float *restrict dw, float *restrict ws) {
#if DC_CONV_HAVE_DIRECT
    const direct_geom gd = direct_geom_forward(s);
    const direct_geom *g = &gd;
    const int K = g->C_in * g->KH * g->KW, C_out = g->C_out;
    const int64_t img_stride = g->C_in * direct_channel_floats(g);
    const int64_t P_out = (int64_t)g->H_out * g->W_out, M = (int64_t)N * P_out;
    const int per_chunk = (int)direct_dw_images_per_chunk(g, N);
    float *pad_buf = ws, *dyT = ws + (size_t)per_chunk * img_stride;
    int *off = (int *)(dyT + (size_t)per_chunk * P_out * C_out);
    for (int k = 0; k < K; k++) off[k] = direct_tap_offset(g, k);
    const int blocks = (C_out + 15) / 16, kgroups = (K + 5) / 6;
    int group = (int)(1024 / P_out);
    if (group < 1) group = 1;
    for (int n0 = 0; n0 < N; n0 += per_chunk) {
        const int nc = N - n0 < per_chunk ? N - n0 : per_chunk;
        direct_pad_chunk(g, N, n0, nc, x, pad_buf);
        transpose_rows_8x8(dy, M, C_out, n0 * P_out, nc * P_out, dyT);
#pragma omp parallel if (PAR_WORTH((int64_t)nc * P_out * C_out * K))
        for (int j0 = 0; j0 < nc; j0 += group) {
            const int j1 = nc - j0 < group ? nc : j0 + group;
#pragma omp for collapse(2) schedule(static) nowait
            for (int b = 0; b < blocks; b++) {
                for (int kg = 0; kg < kgroups; kg++) {
                    const int k0 = 6 * kg, nq = K - k0 < 6 ? K - k0 : 6;
                    const int nv = C_out - 16 * b >= 16 ? 2 : 1;
                    direct_dw_tile_any(nv, nq, g, pad_buf, img_stride, j0, j1, dyT + 16 * b, C_out, off + k0,
                                       dw + (int64_t)16 * b * K + k0, K);
                }
            }
        }
    }
#else
    (void)s, (void)N, (void)x, (void)dy, (void)dw, (void)ws;
#endif
}

/* ---- workspace and algorithm choice -------------------------------------------------------------------- */

/* The Winograd pass of forward (backward_data = 0) or backward-data (1); usable only for 3x3 stride 1. */
/* AUTO takes Winograd where it measured faster than the direct kernels and im2col (bench/run_bench_conv.sh,
 * interleaved, docs/PERFORMANCE.md): at least 32 channels in and out, and tile rows that fill at least 3/4 of
 * their 8-wide vectors (output width 16, 28, 14: yes; 8: half empty, and the direct kernel is faster). On 16
 * channels F(2x2,3x3) only ties the direct kernel. Output widths that are multiples of 32 would take
 * F(4x4,3x3), which is faster (1.2-1.4x on the 16-channel CIFAR layer) but 9x less accurate per convolution
 * (3.8e-6 against 4.2e-7 relative): enough to take PyTorch's 3-step ResNet-8 trajectory (test_golden) from
 * 1.4e-7 to 4.5e-4, beyond its 1e-4 tolerance, so AUTO leaves those widths to the direct kernel and F(4x4) is
 * opt-in (DC_CONV_ALGO=winograd). Backward-weights (for_weights, always F(2x2)) is opt-in too: it was
 * 1.1-1.25x faster on 32-128 channels, but its reduction over tiles runs in blocks whose boundaries depend
 * on the per-rank batch, with larger rounding than the direct kernel, and 20 steps on 1 and on 2 ranks
 * (e2e_mpi) drifted apart by 6.8e-4 instead of 7e-7 (tolerance 1e-4). Forward and backward-data do not
 * depend on the batch split: each tile's sums run in the same order whatever the block. WINOGRAD takes
 * Winograd wherever it is usable. */
static int winograd_pass_for(const dc_conv_shape *s, int backward_data, int for_weights, dc_wino_pass *p) {
    const dc_conv_algo algo = dc_conv_get_algo();
    if (algo != DC_CONV_ALGO_AUTO && algo != DC_CONV_ALGO_WINOGRAD) return 0;
    if (s->KH != 3 || s->KW != 3 || s->stride != 1 || s->groups != 1) return 0;
    if (!backward_data)
        *p = (dc_wino_pass){s->C_in, s->C_out, s->H_in, s->W_in, s->pad, s->H_out, s->W_out, 0};
    else /* dx = conv(dy padded by 2 - pad, w transposed and flipped) */
        *p = (dc_wino_pass){s->C_out, s->C_in, s->H_out, s->W_out, 2 - s->pad, s->H_in, s->W_in, 1};
    if (algo == DC_CONV_ALGO_AUTO) {
        const int tiles_per_row = (p->W_out + 1) / 2, lanes = (tiles_per_row + 7) / 8 * 8;
        if (p->C_in < 32 || p->C_out < 32 || 4 * tiles_per_row < 3 * lanes || dc_wino_tile(p) == 4) return 0;
        if (for_weights) return 0; /* see above: backward-weights is opt-in */
    }
    return dc_wino_usable(p);
}

static int winograd_pass(const dc_conv_shape *s, int backward_data, dc_wino_pass *p) {
    return winograd_pass_for(s, backward_data, 0, p);
}

int dc_conv_uses_winograd(const dc_conv_shape *s, int backward_data) {
    dc_wino_pass p;
    return winograd_pass(s, backward_data, &p);
}

int dc_conv_uses_direct(const dc_conv_shape *s, int backward_data) {
    if (dc_conv_uses_winograd(s, backward_data)) return 0;
    direct_geom g = backward_data ? direct_geom_backward_data(s) : direct_geom_forward(s);
    return direct_usable(s, &g);
}

size_t dc_conv_workspace_floats(const dc_conv_shape *s, int N) {
    if (conv_is_pointwise(s)) return 0;
    const direct_geom gf = direct_geom_forward(s), gb = direct_geom_backward_data(s);
    const int fwd_direct = direct_usable(s, &gf), dw_direct = direct_dw_usable(s, &gf),
              dx_direct = direct_usable(s, &gb);
    size_t need = 0;
    /* the col chunk, for whichever pass runs on im2col (forward im2col implies backward-weights im2col) */
    if (!dw_direct || !dx_direct)
        need = (size_t)s->C_in * s->KH * s->KW * (size_t)dc_conv_images_per_chunk(s, N) * s->H_out * s->W_out;
    if (fwd_direct && direct_workspace_floats(&gf, N) > need) need = direct_workspace_floats(&gf, N);
    if (dw_direct && direct_dw_workspace_floats(&gf, N) > need) need = direct_dw_workspace_floats(&gf, N);
    if (dx_direct && direct_workspace_floats(&gb, N) > need) need = direct_workspace_floats(&gb, N);
    for (int backward_data = 0; backward_data <= 1; backward_data++) {
        dc_wino_pass p;
        if (winograd_pass(s, backward_data, &p) && dc_wino_workspace_floats(&p, N) > need)
            need = dc_wino_workspace_floats(&p, N);
    }
    return need;
}

/* y[c][cols of images n0..n0+nc) += bias[c]; y has M = N*P columns per channel. */
static void add_bias_chunk(int C, int64_t M, int64_t first_col, int64_t ncols, const float *restrict bias,
                           float *restrict y) {
#pragma omp parallel for schedule(static) if (PAR_WORTH((int64_t)C * ncols))
    for (int c = 0; c < C; c++) {
        float *restrict row = y + (int64_t)c * M + first_col;
        const float b = bias[c];
        for (int64_t i = 0; i < ncols; i++) row[i] += b;
    }
}

/* ---- forward ------------------------------------------------------------------------------------------- */

void dc_conv_forward(const dc_conv_shape *s, int N, const float *x, const float *w, const float *bias,
                     float *y, float *workspace) {
    const int G = s->groups, Cg_in = s->C_in / G, Cg_out = s->C_out / G;
    const int K = Cg_in * s->KH * s->KW;
    const int64_t P_out = (int64_t)s->H_out * s->W_out, M = (int64_t)N * P_out;

    if (conv_is_pointwise(s)) {
        /* y_g[Cg_out, M] = W_g[Cg_out, Cg_in] * x_g[Cg_in, M]: one GEMM per group over the whole batch. */
        for (int g = 0; g < G; g++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cg_out, (int)M, K, 1.0f,
                        w + (int64_t)g * Cg_out * K, K, x + (int64_t)g * Cg_in * M, (int)M, 0.0f,
                        y + (int64_t)g * Cg_out * M, (int)M);
        if (bias) add_bias_chunk(s->C_out, M, 0, M, bias, y);
        return;
    }

    dc_wino_pass wp_pass;
    if (winograd_pass(s, 0, &wp_pass)) {
        dc_wino_run(&wp_pass, N, x, w, bias, y, workspace);
        return;
    }
    const direct_geom gd = direct_geom_forward(s);
    if (direct_usable(s, &gd)) {
        float *wp = direct_weights(&gd, N, workspace);
        direct_pack_weights(s, w, 0, wp);
        direct_run(&gd, N, x, wp, bias, y, workspace);
        return;
    }

    const int per_chunk = dc_conv_images_per_chunk(s, N);
    for (int n0 = 0; n0 < N; n0 += per_chunk) {
        const int nc = N - n0 < per_chunk ? N - n0 : per_chunk;
        const int64_t cols = (int64_t)nc * P_out;
        im2col_chunk(s, N, n0, nc, x, workspace);
        /* The chunk's output is the [Cg_out, cols] block at column n0*P of y_g, leading dimension M. */
        for (int g = 0; g < G; g++)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cg_out, (int)cols, K, 1.0f,
                        w + (int64_t)g * Cg_out * K, K, workspace + (int64_t)g * K * cols, (int)cols, 0.0f,
                        y + (int64_t)g * Cg_out * M + n0 * P_out, (int)M);
        if (bias) add_bias_chunk(s->C_out, M, n0 * P_out, cols, bias, y);
    }
}

/* ---- backward ------------------------------------------------------------------------------------------ */

/* dbias[c] += sum of dy's row c (M values), summed in double in a fixed order. */
static void bias_backward(int C, int64_t M, const float *restrict dy, float *restrict dbias) {
#pragma omp parallel for schedule(static) if (PAR_WORTH((int64_t)C * M))
    for (int c = 0; c < C; c++) {
        const float *restrict row = dy + (int64_t)c * M;
        double acc[4] = {0, 0, 0, 0};
        int64_t i = 0;
        for (; i + 4 <= M; i += 4) {
            acc[0] += row[i];
            acc[1] += row[i + 1];
            acc[2] += row[i + 2];
            acc[3] += row[i + 3];
        }
        for (; i < M; i++) acc[0] += row[i];
        dbias[c] += (float)((acc[0] + acc[1]) + (acc[2] + acc[3]));
    }
}

void dc_conv_backward(const dc_conv_shape *s, int N, const float *x, const float *w, const float *dy,
                      float *dx, float *dw, float *dbias, float *workspace) {
    const int G = s->groups, Cg_in = s->C_in / G, Cg_out = s->C_out / G;
    const int K = Cg_in * s->KH * s->KW;
    const int64_t P_out = (int64_t)s->H_out * s->W_out, M = (int64_t)N * P_out;

    if (dbias) bias_backward(s->C_out, M, dy, dbias);

    if (conv_is_pointwise(s)) {
        for (int g = 0; g < G; g++) {
            const float *dy_g = dy + (int64_t)g * Cg_out * M;
            /* dW_g[Cg_out, Cg_in] += dy_g[Cg_out, M] * x_g^T[M, Cg_in] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Cg_out, K, (int)M, 1.0f, dy_g, (int)M,
                        x + (int64_t)g * Cg_in * M, (int)M, 1.0f, dw + (int64_t)g * Cg_out * K, K);
            /* dx_g[Cg_in, M] = W_g^T[Cg_in, Cg_out] * dy_g[Cg_out, M] (overwrites) */
            if (dx)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)M, Cg_out, 1.0f,
                            w + (int64_t)g * Cg_out * K, K, dy_g, (int)M, 0.0f, dx + (int64_t)g * Cg_in * M,
                            (int)M);
        }
        return;
    }

    /* Which kernel does what: the direct kernels where they apply (see "direct stride-1 path"), else
     * im2col + sgemm, chunk by chunk, with backward-weights and backward-data sharing each chunk's col. */
    const direct_geom gd = direct_geom_backward_data(s), gf = direct_geom_forward(s);
    dc_wino_pass dx_pass, dw_pass;
    const int dw_wino = winograd_pass_for(s, 0, 1, &dw_pass);
    const int dw_direct = !dw_wino && direct_dw_usable(s, &gf);
    const int dx_wino = dx && winograd_pass(s, 1, &dx_pass);
    const int dx_direct = dx && !dx_wino && direct_usable(s, &gd);
    const int dx_im2col = dx && !dx_wino && !dx_direct;

    if (dw_wino) dc_wino_backward_weights(&dw_pass, N, x, dy, dw, workspace);
    if (dw_direct) direct_backward_weights(s, N, x, dy, dw, workspace);
    const int dw_im2col = !dw_wino && !dw_direct;

    const int per_chunk = dc_conv_images_per_chunk(s, N);
    for (int n0 = 0; n0 < N && (dw_im2col || dx_im2col); n0 += per_chunk) {
        const int nc = N - n0 < per_chunk ? N - n0 : per_chunk;
        const int64_t cols = (int64_t)nc * P_out;
        if (dw_im2col) {
            im2col_chunk(s, N, n0, nc, x, workspace);
            /* dW_g[Cg_out, K] += dy_g chunk [Cg_out, cols] * col_g^T [cols, K] */
            for (int g = 0; g < G; g++)
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Cg_out, K, (int)cols, 1.0f,
                            dy + (int64_t)g * Cg_out * M + n0 * P_out, (int)M,
                            workspace + (int64_t)g * K * cols, (int)cols, 1.0f, dw + (int64_t)g * Cg_out * K,
                            K);
        }
        if (!dx_im2col) continue;
        /* dcol_g[K, cols] = W_g^T * dy_g chunk, into the workspace (over the col chunk, used up by dW) */
        for (int g = 0; g < G; g++)
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)cols, Cg_out, 1.0f,
                        w + (int64_t)g * Cg_out * K, K, dy + (int64_t)g * Cg_out * M + n0 * P_out, (int)M,
                        0.0f, workspace + (int64_t)g * K * cols, (int)cols);
        col2im_chunk(s, N, n0, nc, workspace, dx);
    }
    if (dx_wino) dc_wino_run(&dx_pass, N, dy, w, NULL, dx, workspace); /* the workspace reused after dW */
    if (dx_direct) {
        /* dx = conv(dy padded by K-1-pad, w transposed and flipped), the workspace reused after dW */
        float *wp = direct_weights(&gd, N, workspace);
        direct_pack_weights(s, w, 1, wp);
        direct_run(&gd, N, dy, wp, NULL, dx, workspace);
    }
}
