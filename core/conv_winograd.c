/*
 * conv_winograd.c: Winograd F(2x2, 3x3) convolution (Lavin & Gray, 2016) for 3x3 stride-1 passes.
 *
 * The math. Cut the output into 2x2 tiles; tile (n, ty, tx) needs the 4x4 input patch d starting at input
 * row 2*ty - pad, column 2*tx - pad (zero outside the image). For one input channel c and output channel k,
 *
 *     y_tile = A^T [ (G g G^T) .* (B^T d B) ] A          (.* elementwise, 16 products instead of 36)
 *
 *     B^T = | 1  0 -1  0 |    G = | 1    0    0  |    A^T = | 1  1  1  0 |
 *           | 0  1  1  0 |        | 1/2  1/2  1/2|          | 0  1 -1 -1 |
 *           | 0 -1  1  0 |        | 1/2 -1/2  1/2|
 *           | 0  1  0 -1 |        | 0    0    1  |
 *
 * and summing over c before the output transform turns the elementwise products into 16 independent GEMMs,
 * one per position xi of the 4x4 transformed tile:
 *
 *     U[xi][k][c] = (G g_kc G^T)[xi]      V[xi][c][t] = (B^T d_ct B)[xi]      M[xi][k][t] = sum_c U V
 *     y[k][tile t] = A^T M[.][k][t] A
 *
 * A 3x3 direct convolution does 9 multiply-adds per output and input channel; this does 16/4 = 4, plus the
 * transforms (a few adds per value, independent of the channel counts). The error is that of a few extra
 * rounding steps: about 1e-7 relative, 2-3x the direct kernel's (the transforms hold only 0, +-1 and 1/2).
 *
 * The layout. Tiles are numbered (image, tile row, tile column); a block is a run of whole tile rows, sized
 * so that its V [16][C_in][TBp] and M [16][C_out][TBp] (TBp = tiles rounded up to 8) stay in a core's L2.
 * Each thread takes whole blocks: gather its input patches (the 16 values of each patch into the 16 V
 * planes, straight from the input rows with even/odd deinterleaves), transform them in place, run the 16
 * GEMMs with an AVX2 register tile of 4 output channels x 24 tiles (like the direct kernel's), then transform
 * M back and write the 2x2 outputs. Every output is computed by one thread from the same blocks whatever the
 * thread count, so the result is bit-identical for 1, 2 or 64 threads.
 */
#include "conv_winograd.h"

#include <omp.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define DC_WINO_AVAILABLE 1
#else
#define DC_WINO_AVAILABLE 0
#endif

/* Bytes of V + M one block aims at: half of a Zen 3 / Skylake-SP L2 (512 KiB..1 MiB), leaving room for the
 * transformed weights of the small layers. */
#define WINO_BLOCK_FLOATS (64 * 1024)

typedef struct {
    int th, tw;            /* tile rows and columns per image */
    int rows;              /* tile rows per block */
    int tbp;               /* tiles per block rounded up to a multiple of 8 */
    size_t vplane, mplane; /* floats from one xi plane of V (of M) to the next */
    size_t u;              /* floats of the transformed weights, 64-byte multiple */
    size_t slot;           /* floats of one thread's block buffers */
    int slots;             /* thread slots in the workspace */
} wino_plan;

static wino_plan plan_make(const dc_wino_pass *p, int N) {
    wino_plan q;
    q.th = (p->H_out + 1) / 2;
    q.tw = (p->W_out + 1) / 2;
    int target = WINO_BLOCK_FLOATS / (16 * (p->C_in + p->C_out));
    if (target < 16) target = 16;
    q.rows = target / q.tw;
    if (q.rows < 1) q.rows = 1;
    /* The GEMM kernel takes 24 tiles at a time: round the rows up so the block is a multiple of 24 tiles,
     * unless that would grow it by more than half. */
    int g = 24, a = q.tw;
    while (a) { /* g = gcd(24, tw) */
        const int t = g % a;
        g = a;
        a = t;
    }
    const int m = 24 / g, rounded = (q.rows + m - 1) / m * m;
    if (2 * rounded <= 3 * q.rows) q.rows = rounded;
    const int total_rows = N * q.th;
    if (q.rows > total_rows) q.rows = total_rows > 0 ? total_rows : 1;
    q.tbp = (q.rows * q.tw + 7) / 8 * 8;
    q.u = ((size_t)16 * p->C_out * p->C_in + 15) / 16 * 16;
    /* The 16 planes are read and written together, 16 streams: a plane size that is a multiple of 4 KiB
     * would put them all in the same L1 sets (and make loads alias the stores to other planes), so each
     * plane is padded by two cache lines. */
    q.vplane = (size_t)p->C_in * q.tbp + 32;
    q.mplane = (size_t)p->C_out * q.tbp + 32;
    /* V, M and the 4 output planes of one channel */
    q.slot = 16 * (q.vplane + q.mplane) + (size_t)4 * q.tbp;
    q.slots = omp_get_num_procs();
    if (q.slots < 1) q.slots = 1;
    return q;
}

int dc_wino_usable(const dc_wino_pass *p) {
    if (!DC_WINO_AVAILABLE) return 0;
    if (p->C_in < 4 || p->C_out < 4 || p->C_in > 256 || p->C_out > 256 || p->C_out % 4) return 0;
    if (p->pad < 0 || p->pad > 2 || p->H_out < 1 || p->W_out < 1) return 0;
    if (p->H_out != p->H_in + 2 * p->pad - 2 || p->W_out != p->W_in + 2 * p->pad - 2) return 0;
    return 1;
}

size_t dc_wino_workspace_floats(const dc_wino_pass *p, int N) {
    if (!dc_wino_usable(p) || N < 1) return 0;
    const wino_plan q = plan_make(p, N);
    return q.u + (size_t)q.slots * q.slot;
}

#if DC_WINO_AVAILABLE

/* U[xi][k/4][c][k%4] = (G g G^T)[xi] for every (k, c); g = w[k][c] (transpose = 0) or the flipped
 * w[c][k] (transpose = 1: the pass's output channel k is the original input channel). */
static void transform_weights(const dc_wino_pass *p, const float *restrict w, float *restrict U) {
    const int Ci = p->C_in, Co = p->C_out, KB = Co / 4;
#pragma omp parallel for schedule(static) if ((int64_t)Ci * Co >= 4096)
    for (int k = 0; k < Co; k++) {
        for (int c = 0; c < Ci; c++) {
            float g[3][3];
            for (int i = 0; i < 3; i++)
                for (int j = 0; j < 3; j++)
                    g[i][j] = p->transpose ? w[(((int64_t)c * Co + k) * 3 + (2 - i)) * 3 + (2 - j)]
                                           : w[(((int64_t)k * Ci + c) * 3 + i) * 3 + j];
            float t[4][3]; /* G g */
            for (int j = 0; j < 3; j++) {
                t[0][j] = g[0][j];
                t[1][j] = 0.5f * (g[0][j] + g[1][j] + g[2][j]);
                t[2][j] = 0.5f * (g[0][j] - g[1][j] + g[2][j]);
                t[3][j] = g[2][j];
            }
            for (int i = 0; i < 4; i++) { /* (G g) G^T */
                const float u[4] = {t[i][0], 0.5f * (t[i][0] + t[i][1] + t[i][2]),
                                    0.5f * (t[i][0] - t[i][1] + t[i][2]), t[i][2]};
                for (int j = 0; j < 4; j++) {
                    const int xi = i * 4 + j;
                    U[(((int64_t)xi * KB + k / 4) * Ci + c) * 4 + k % 4] = u[j];
                }
            }
        }
    }
}

/* The even (odd = 0) or odd (odd = 1) elements of the 16 floats a, b, in order. */
static inline __m256 deinterleave(__m256 a, __m256 b, int odd) {
    const __m256 s = odd ? _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))
                         : _mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0));
    return _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(s), _MM_SHUFFLE(3, 1, 2, 0)));
}

/* The 8 floats row[at .. at+7], lanes where ok is 0 read as 0.0 (and are not read at all). */
static inline __m256 masked_row_load(const float *row, int at, __m256i ok) {
    /* at may be negative (the left padding): the address is formed as an integer, and the masked-off lanes
     * are never touched */
    if (_mm256_testz_si256(ok, ok)) return _mm256_setzero_ps();
    return _mm256_maskload_ps((const float *)((uintptr_t)row + (intptr_t)at * (intptr_t)sizeof(float)), ok);
}

/* V[xi][c][t] = (B^T d B)[xi] for the block's tiles, d the 4x4 input patch of tile t in channel c. */
static void gather_transform_input(const dc_wino_pass *p, const wino_plan *q, int N, const float *restrict in,
                                   int row0, int nrows, float *restrict V) {
    const int Ci = p->C_in, tw = q->tw, tbp = q->tbp, H = p->H_in, W = p->W_in, pad = p->pad;
    const int ntiles = nrows * tw;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), zero = _mm256_setzero_si256();
    const __m256i width = _mm256_set1_epi32(W);
    const int64_t plane = (int64_t)q->vplane;
    for (int c = 0; c < Ci; c++) {
        for (int r = 0; r < nrows; r++) {
            const int rho = row0 + r, n = rho / q->th, ty = rho % q->th;
            for (int i = 0; i < 4; i++) {
                const int h = 2 * ty - pad + i;
                /* d[i][j] of tile tx is input column 2*tx - pad + j of row h (zero outside the image):
                 * the even and odd columns of 18 consecutive ones give 8 tiles' j = 0, 1 (from base) and
                 * j = 2, 3 (from base + 2). Masked loads read nothing outside the row. */
                float *restrict d0 = V + (i * 4) * plane + (int64_t)c * tbp + r * tw;
                float *restrict d1 = d0 + plane, *restrict d2 = d1 + plane, *restrict d3 = d2 + plane;
                if (h < 0 || h >= H) {
                    for (int tx = 0; tx < tw; tx++) d0[tx] = d1[tx] = d2[tx] = d3[tx] = 0.0f;
                    continue;
                }
                const float *src = in + (((int64_t)c * N + n) * H + h) * W;
                for (int tx = 0; tx < tw; tx += 8) {
                    const int base = 2 * tx - pad;
                    __m256 v[4];
                    static const int offs[4] = {0, 8, 2, 10};
                    for (int k = 0; k < 4; k++) {
                        const int at = base + offs[k];
                        if (at >= 0 && at + 8 <= W) {
                            v[k] = _mm256_loadu_ps(src + at);
                        } else {
                            const __m256i pos = _mm256_add_epi32(_mm256_set1_epi32(at), lane);
                            const __m256i ok = _mm256_andnot_si256(_mm256_cmpgt_epi32(zero, pos),
                                                                   _mm256_cmpgt_epi32(width, pos));
                            v[k] = masked_row_load(src, at, ok);
                        }
                    }
                    const __m256 e0 = deinterleave(v[0], v[1], 0), e1 = deinterleave(v[0], v[1], 1);
                    const __m256 e2 = deinterleave(v[2], v[3], 0), e3 = deinterleave(v[2], v[3], 1);
                    if (tx + 8 <= tw) {
                        _mm256_storeu_ps(d0 + tx, e0);
                        _mm256_storeu_ps(d1 + tx, e1);
                        _mm256_storeu_ps(d2 + tx, e2);
                        _mm256_storeu_ps(d3 + tx, e3);
                    } else {
                        const __m256i keep = _mm256_cmpgt_epi32(_mm256_set1_epi32(tw - tx), lane);
                        _mm256_maskstore_ps(d0 + tx, keep, e0);
                        _mm256_maskstore_ps(d1 + tx, keep, e1);
                        _mm256_maskstore_ps(d2 + tx, keep, e2);
                        _mm256_maskstore_ps(d3 + tx, keep, e3);
                    }
                }
            }
        }
        for (int xi = 0; xi < 16; xi++) /* lanes past the last tile: zeros, never written out */
            for (int t = ntiles; t < tbp; t++) V[xi * plane + (int64_t)c * tbp + t] = 0.0f;
        /* in place, 8 tiles at a time: rows then columns of B^T d B */
        float *restrict base = V + (int64_t)c * tbp;
        for (int t = 0; t < tbp; t += 8) {
            __m256 d[4][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) d[i][j] = _mm256_loadu_ps(base + (i * 4 + j) * plane + t);
            __m256 e[4][4];
            for (int j = 0; j < 4; j++) {
                e[0][j] = _mm256_sub_ps(d[0][j], d[2][j]);
                e[1][j] = _mm256_add_ps(d[1][j], d[2][j]);
                e[2][j] = _mm256_sub_ps(d[2][j], d[1][j]);
                e[3][j] = _mm256_sub_ps(d[1][j], d[3][j]);
            }
            for (int i = 0; i < 4; i++) {
                _mm256_storeu_ps(base + (i * 4 + 0) * plane + t, _mm256_sub_ps(e[i][0], e[i][2]));
                _mm256_storeu_ps(base + (i * 4 + 1) * plane + t, _mm256_add_ps(e[i][1], e[i][2]));
                _mm256_storeu_ps(base + (i * 4 + 2) * plane + t, _mm256_sub_ps(e[i][2], e[i][1]));
                _mm256_storeu_ps(base + (i * 4 + 3) * plane + t, _mm256_sub_ps(e[i][1], e[i][3]));
            }
        }
    }
}

/* M[xi][k0..k0+3][t0 .. t0+8*nv) = sum_c U[xi][k0/4][c][0..3] * V[xi][c][t0 ..]: 4 x nv accumulators. */
static inline __attribute__((always_inline)) void gemm_tile(const int nv, int Ci, int tbp,
                                                            const float *restrict u, const float *restrict v,
                                                            float *restrict m) {
    __m256 acc[4][3];
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < nv; j++) acc[r][j] = _mm256_setzero_ps();
    for (int c = 0; c < Ci; c++) {
        __m256 x[3];
        for (int j = 0; j < nv; j++) x[j] = _mm256_loadu_ps(v + (int64_t)c * tbp + 8 * j);
        for (int r = 0; r < 4; r++) {
            const __m256 wv = _mm256_broadcast_ss(u + 4 * c + r);
            for (int j = 0; j < nv; j++) acc[r][j] = _mm256_fmadd_ps(wv, x[j], acc[r][j]);
        }
    }
    for (int r = 0; r < 4; r++)
        for (int j = 0; j < nv; j++) _mm256_storeu_ps(m + (int64_t)r * tbp + 8 * j, acc[r][j]);
}

static void block_gemms(const dc_wino_pass *p, const wino_plan *q, const float *restrict U,
                        const float *restrict V, float *restrict Mb) {
    const int Ci = p->C_in, Co = p->C_out, KB = Co / 4, tbp = q->tbp;
    for (int xi = 0; xi < 16; xi++) {
        const float *vx = V + (int64_t)xi * q->vplane;
        float *mx = Mb + (int64_t)xi * q->mplane;
        for (int kb = 0; kb < KB; kb++) {
            const float *u = U + ((int64_t)xi * KB + kb) * Ci * 4;
            float *m = mx + (int64_t)4 * kb * tbp;
            int t = 0;
            for (; t + 24 <= tbp; t += 24) gemm_tile(3, Ci, tbp, u, vx + t, m + t);
            if (tbp - t == 16)
                gemm_tile(2, Ci, tbp, u, vx + t, m + t);
            else if (tbp - t == 8)
                gemm_tile(1, Ci, tbp, u, vx + t, m + t);
        }
    }
}

/* o[2*tx] = a[tx], o[2*tx + 1] = b[tx] for tx < tw. */
static inline void interleave_row(float *restrict o, const float *restrict a, const float *restrict b,
                                  int tw) {
    int tx = 0;
    for (; tx + 8 <= tw; tx += 8) {
        const __m256 va = _mm256_loadu_ps(a + tx), vb = _mm256_loadu_ps(b + tx);
        const __m256 lo = _mm256_unpacklo_ps(va, vb),
                     hi = _mm256_unpackhi_ps(va, vb); /* a0 b0 a1 b1 | a4.. */
        _mm256_storeu_ps(o + 2 * tx, _mm256_permute2f128_ps(lo, hi, 0x20));
        _mm256_storeu_ps(o + 2 * tx + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
    }
    for (; tx < tw; tx++) {
        o[2 * tx] = a[tx];
        o[2 * tx + 1] = b[tx];
    }
}

/* y = A^T M A for each output channel of the block, written as 2x2 tiles (clipped at odd edges). */
static void transform_output(const dc_wino_pass *p, const wino_plan *q, int N, const float *restrict Mb,
                             int row0, int nrows, const float *restrict bias, float *restrict out,
                             float *restrict ybuf) {
    const int Co = p->C_out, tw = q->tw, tbp = q->tbp, Ho = p->H_out, Wo = p->W_out;
    const int64_t plane = (int64_t)q->mplane;
    float *restrict y00 = ybuf, *restrict y01 = ybuf + tbp, *restrict y10 = ybuf + 2 * tbp,
                    *restrict y11 = ybuf + 3 * tbp;
    for (int k = 0; k < Co; k++) {
        const float *base = Mb + (int64_t)k * tbp;
        const __m256 b = _mm256_set1_ps(bias ? bias[k] : 0.0f);
        for (int t = 0; t < tbp; t += 8) {
            __m256 m[4][4];
            for (int i = 0; i < 4; i++)
                for (int j = 0; j < 4; j++) m[i][j] = _mm256_loadu_ps(base + (i * 4 + j) * plane + t);
            __m256 s[2][4]; /* A^T M */
            for (int j = 0; j < 4; j++) {
                s[0][j] = _mm256_add_ps(_mm256_add_ps(m[0][j], m[1][j]), m[2][j]);
                s[1][j] = _mm256_sub_ps(_mm256_sub_ps(m[1][j], m[2][j]), m[3][j]);
            }
            _mm256_storeu_ps(y00 + t,
                             _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s[0][0], s[0][1]), s[0][2]), b));
            _mm256_storeu_ps(y01 + t,
                             _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s[0][1], s[0][2]), s[0][3]), b));
            _mm256_storeu_ps(y10 + t,
                             _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(s[1][0], s[1][1]), s[1][2]), b));
            _mm256_storeu_ps(y11 + t,
                             _mm256_add_ps(_mm256_sub_ps(_mm256_sub_ps(s[1][1], s[1][2]), s[1][3]), b));
        }
        for (int r = 0; r < nrows; r++) {
            const int rho = row0 + r, n = rho / q->th, ty = rho % q->th;
            const float *a0 = y00 + r * tw, *a1 = y01 + r * tw, *c0 = y10 + r * tw, *c1 = y11 + r * tw;
            float *restrict o0 = out + (((int64_t)k * N + n) * Ho + 2 * ty) * Wo;
            if (Wo % 2 == 0) {
                interleave_row(o0, a0, a1, tw);
                if (2 * ty + 1 < Ho) interleave_row(o0 + Wo, c0, c1, tw);
            } else {
                for (int ow = 0; ow < Wo; ow++) o0[ow] = (ow & 1) ? a1[ow / 2] : a0[ow / 2];
                if (2 * ty + 1 < Ho)
                    for (int ow = 0; ow < Wo; ow++) o0[Wo + ow] = (ow & 1) ? c1[ow / 2] : c0[ow / 2];
            }
        }
    }
}

void dc_wino_run(const dc_wino_pass *p, int N, const float *in, const float *w, const float *bias, float *out,
                 float *workspace) {
    const wino_plan q = plan_make(p, N);
    float *U = workspace;
    transform_weights(p, w, U);
    const int total_rows = N * q.th, blocks = (total_rows + q.rows - 1) / q.rows;
    int threads = omp_get_max_threads();
    if (threads > q.slots) threads = q.slots;
    const int64_t work = (int64_t)N * p->H_out * p->W_out * p->C_in * p->C_out;
#pragma omp parallel num_threads(threads) if (blocks > 1 && work >= ((int64_t)1 << 16))
    {
        float *V = workspace + q.u + (size_t)omp_get_thread_num() * q.slot;
        float *Mb = V + 16 * q.vplane;
        float *ybuf = Mb + 16 * q.mplane;
#pragma omp for schedule(static)
        for (int b = 0; b < blocks; b++) {
            const int row0 = b * q.rows, nrows = total_rows - row0 < q.rows ? total_rows - row0 : q.rows;
            gather_transform_input(p, &q, N, in, row0, nrows, V);
            block_gemms(p, &q, U, V, Mb);
            transform_output(p, &q, N, Mb, row0, nrows, bias, out, ybuf);
        }
    }
}

#else /* no AVX2 + FMA: never usable, never called */

void dc_wino_run(const dc_wino_pass *p, int N, const float *in, const float *w, const float *bias, float *out,
                 float *workspace) {
    (void)p, (void)N, (void)in, (void)w, (void)bias, (void)out, (void)workspace;
}

#endif
