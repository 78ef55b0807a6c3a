/*
 * transforms.c: the per-sample image transforms (crop, resize, flip, colour jitter, normalise).
 *
 * The reference implementation runs torchvision 0.14 transforms on PIL images, so "the same augmentation"
 * means PIL's arithmetic. Everything here reproduces it bit for bit given the same parameters:
 *
 *  - Bilinear resize (PIL's Image.resize(..., BILINEAR), which torchvision's Resize/RandomResizedCrop call):
 *    a separable convolution with the triangle filter. For output pixel xx of a size-`in` -> size-`out`
 *    axis, scale = in/out, the filter is stretched by fs = max(1, scale) (so shrinking ANTIALIASES: every
 *    input pixel under the output footprint contributes), its centre is c = (xx + 0.5) * scale, the taps are
 *    input pixels x in [round(c - fs), round(c + fs)), with weights tri((x + 0.5 - c) / fs) normalised to sum
 *    to 1. Weights are quantised to 22-bit fixed point, the horizontal pass runs first and rounds to uint8,
 *    then the vertical pass (a pass is skipped when its size does not change). tensor-based torchvision with
 *    antialias=False would instead sample only the 2 nearest pixels, which aliases when shrinking by more
 * than 2x (RandomResizedCrop shrinks a 500 px crop to 224 routinely); docs/IMAGES.md quantifies the
 * difference.
 *  - Resize + CenterCrop (evaluation) computes only the output pixels inside the crop window: each output
 *    pixel of a separable resize depends only on its own taps, so this equals resizing fully and cropping.
 *  - ColorJitter: PIL's ImageEnhance blends out = trunc(d + f (v - d)) in float32, clipped to [0, 255], with
 *    d = 0 (brightness), d = round(mean of the luma image) (contrast), d = the pixel's luma (saturation);
 *    luma is ITU-R 601 in 16-bit fixed point, (19595 R + 38470 G + 7471 B + 2^15) >> 16.
 *  - ToTensor + Normalize: ((float)v / 255 - mean) / std in float32, the operations torch performs.
 *
 * Speed (docs/IMAGES.md has the numbers): the resampler's horizontal pass transposes tiles of 8 rows so that
 * SIMD lanes run across rows (every row shares the taps), the vertical pass keeps its accumulators in
 * registers, both with the same integer arithmetic as PIL; after resampling the image is made planar, so
 * colour jitter and normalisation are plain vectorisable loops; the flip is folded into the normalisation.
 *
 * Floating-point contraction (FMA) would change roundings and so break bit-exactness with PIL, which is
 * compiled without it: it is switched off for this file.
 *
 * No allocation: all buffers come from the caller's scratch (dc_transform_scratch_bytes). The convenience
 * dc_jpeg_decode_transform at the end grows its scratch like the decoder grows img->pix.
 */
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

#include "datasets/image.h"

#include "core/check.h"
#include "core/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define PIL_PRECISION_BITS 22 /* 32 - 8 - 2: PIL's fixed point for 8-bit images */

static size_t align64(size_t n) {
    return (n + 63) & ~(size_t)63;
}

/* ------------------------------------------------------------------------------------------------------ */
/* PIL bilinear resampling                                                                                 */
/* ------------------------------------------------------------------------------------------------------ */

static double pil_triangle(double x) {
    if (x < 0.0) x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Taps per output pixel: the filter support fs = max(1, in/out) on both sides plus one. */
static int pil_ksize(int in_size, int out_size) {
    double scale = (double)in_size / (double)out_size;
    double support = scale < 1.0 ? 1.0 : scale;
    return (int)ceil(support) * 2 + 1;
}

/* Fixed-point weights and tap ranges for outputs first .. first+n-1 of an in_size -> out_size axis:
 * bounds[2j] = first input tap, bounds[2j+1] = number of taps, kk[j*ksize + t] = weight * 2^22. */
static void pil_coeffs(int in_size, int out_size, int first, int n, int ksize, int32_t *bounds, int32_t *kk) {
    double scale = (double)in_size / (double)out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    double support = filterscale; /* the triangle filter has support 1 */
    double inv = 1.0 / filterscale;
    for (int j = 0; j < n; j++) {
        int xx = first + j;
        double center = (xx + 0.5) * scale;
        int xmin = (int)(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = (int)(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        double sum = 0.0;
        for (int x = 0; x < xmax; x++) sum += pil_triangle((x + xmin - center + 0.5) * inv);
        int32_t *k = kk + (size_t)j * (size_t)ksize;
        for (int x = 0; x < xmax; x++) {
            double w = pil_triangle((x + xmin - center + 0.5) * inv);
            if (sum != 0.0) w /= sum;
            k[x] = w < 0 ? (int32_t)(-0.5 + w * (1 << PIL_PRECISION_BITS))
                         : (int32_t)(0.5 + w * (1 << PIL_PRECISION_BITS));
        }
        for (int x = xmax; x < ksize; x++) k[x] = 0;
        bounds[2 * j] = xmin;
        bounds[2 * j + 1] = xmax;
    }
}

/* PIL's clip8: v >> 22 clamped to [0, 255] (written branch-free so loops over it vectorise). */
static inline uint8_t pil_clip8(int32_t v) {
    int32_t x = v >> PIL_PRECISION_BITS;
    x = x < 0 ? 0 : x;
    return (uint8_t)(x > 255 ? 255 : x);
}

/* Horizontal pass, generic channel count: rows x (n output columns), each output a weighted sum along its
 * input row. */
static void pil_horizontal_generic(const uint8_t *src, size_t src_stride, int c, int rows, uint8_t *dst,
                                   size_t dst_stride, int n, int ksize, const int32_t *bounds,
                                   const int32_t *kk) {
    const int32_t half = 1 << (PIL_PRECISION_BITS - 1); /* rounding */
    for (int r = 0; r < rows; r++) {
        const uint8_t *s = src + (size_t)r * src_stride;
        uint8_t *d = dst + (size_t)r * dst_stride;
        for (int j = 0; j < n; j++) {
            const int32_t *k = kk + (size_t)j * (size_t)ksize;
            const uint8_t *p = s + (size_t)bounds[2 * j] * (size_t)c;
            for (int ch = 0; ch < c; ch++) {
                int32_t a = half;
                for (int x = 0; x < bounds[2 * j + 1]; x++) a += p[(size_t)x * c + ch] * k[x];
                d[(size_t)j * c + ch] = pil_clip8(a);
            }
        }
    }
}

/* Eight int32 lanes: AVX2 intrinsics where available, otherwise plain arrays (that compilers may still
 * vectorise). GCC's generic vector extensions were tried and compile the u8 -> i32 widening to scalar code.
 */
#if defined(__AVX2__)
#include <immintrin.h>
typedef __m256i dc_v8i;
static inline dc_v8i v8_set1(int32_t x) {
    return _mm256_set1_epi32(x);
}
/* acc + widen(p[0..7]) * w */
static inline dc_v8i v8_madd_u8(dc_v8i acc, const uint8_t *p, int32_t w) {
    __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(const void *)p));
    return _mm256_add_epi32(acc, _mm256_mullo_epi32(v, _mm256_set1_epi32(w)));
}
/* pil_clip8 on 8 lanes, narrowed to bytes and stored */
static inline void v8_store_clip(uint8_t *p, dc_v8i acc) {
    __m256i x = _mm256_srai_epi32(acc, PIL_PRECISION_BITS);
    x = _mm256_min_epi32(_mm256_max_epi32(x, _mm256_setzero_si256()), _mm256_set1_epi32(255));
    __m128i w16 = _mm_packus_epi32(_mm256_castsi256_si128(x), _mm256_extracti128_si256(x, 1));
    _mm_storel_epi64((__m128i *)(void *)p, _mm_packus_epi16(w16, w16));
}
#else
typedef struct {
    int32_t v[8];
} dc_v8i;
static inline dc_v8i v8_set1(int32_t x) {
    dc_v8i r;
    for (int i = 0; i < 8; i++) r.v[i] = x;
    return r;
}
static inline dc_v8i v8_madd_u8(dc_v8i acc, const uint8_t *p, int32_t w) {
    for (int i = 0; i < 8; i++) acc.v[i] += p[i] * w;
    return acc;
}
static inline void v8_store_clip(uint8_t *p, dc_v8i acc) {
    for (int i = 0; i < 8; i++) p[i] = pil_clip8(acc.v[i]);
}
#endif

/* Horizontal pass vectorised across rows. Along a row, the taps of neighbouring outputs start at irregular
 * positions, which SIMD cannot load; but every row uses the same taps. So a tile of TR rows is transposed
 * (tile[x][r][ch]: for each input column the tile's TR x C bytes are contiguous) and each output column
 * becomes a sum over its taps of (coefficient x a contiguous vector of TR x C bytes): NV = TR C / 8 SIMD
 * multiply-adds per tap, accumulators in registers. Same integer arithmetic as the scalar loop, so still
 * bit-exact. C = 3: 8-row tiles (24 bytes per column), C = 1: 32-row tiles. tile: x_hi * TR * C + 8 bytes. */
static inline __attribute__((always_inline)) void pil_horizontal_tiled(const int C, const uint8_t *src,
                                                                       size_t src_stride, int rows,
                                                                       uint8_t *dst, size_t dst_stride, int n,
                                                                       int ksize, const int32_t *bounds,
                                                                       const int32_t *kk, uint8_t *tile) {
    const int TR = C == 3 ? 8 : 32, E = TR * C, NV = E / 8;
    const int32_t half = 1 << (PIL_PRECISION_BITS - 1);
    const int x_lo = bounds[0], x_hi = bounds[2 * (n - 1)] + bounds[2 * (n - 1) + 1];
    for (int r0 = 0; r0 < rows; r0 += TR) {
        const int R = rows - r0 < TR ? rows - r0 : TR;
        /* transpose; for RGB a pixel is copied with one 4-byte move whose extra byte lands in the next slot
         * (written afterwards: x ascending outside, r ascending inside), except in the last column */
        for (int x = x_lo; x < x_hi; x++) {
            uint8_t *t = tile + (size_t)x * E;
            for (int r = 0; r < R; r++) {
                const uint8_t *s = src + (size_t)(r0 + r) * src_stride + (size_t)x * C;
                if (C == 3 && x + 1 < x_hi)
                    memcpy(t + 3 * r, s, 4);
                else if (C == 3)
                    t[3 * r] = s[0], t[3 * r + 1] = s[1], t[3 * r + 2] = s[2];
                else
                    t[r] = s[0];
            }
            if (R < TR) memset(t + R * C, 0, (size_t)(E - R * C));
        }
        for (int j = 0; j < n; j++) {
            const int32_t *k = kk + (size_t)j * (size_t)ksize;
            const uint8_t *col = tile + (size_t)bounds[2 * j] * E;
            dc_v8i acc[4];
            for (int v = 0; v < NV; v++) acc[v] = v8_set1(half);
            for (int t = 0; t < bounds[2 * j + 1]; t++, col += E)
                for (int v = 0; v < NV; v++) acc[v] = v8_madd_u8(acc[v], col + 8 * v, k[t]);
            uint8_t out[32 + 1] = {0};
            for (int v = 0; v < NV; v++) v8_store_clip(out + 8 * v, acc[v]);
            for (int r = 0; r < R; r++) { /* a 4-byte move spills into the next output, written later */
                uint8_t *d = dst + (size_t)(r0 + r) * dst_stride + (size_t)j * C;
                if (C == 3 && j + 1 < n)
                    memcpy(d, out + 3 * r, 4);
                else if (C == 3)
                    d[0] = out[3 * r], d[1] = out[3 * r + 1], d[2] = out[3 * r + 2];
                else
                    d[0] = out[r];
            }
        }
    }
}

enum { DC_TILE_BYTES = 32 }; /* bytes per input column in a tile (8 rows x 3 channels, or 32 rows x 1) */

static void pil_horizontal(const uint8_t *src, size_t src_stride, int c, int rows, uint8_t *dst,
                           size_t dst_stride, int n, int ksize, const int32_t *bounds, const int32_t *kk,
                           uint8_t *tile) {
    if (c == 3)
        pil_horizontal_tiled(3, src, src_stride, rows, dst, dst_stride, n, ksize, bounds, kk, tile);
    else if (c == 1)
        pil_horizontal_tiled(1, src, src_stride, rows, dst, dst_stride, n, ksize, bounds, kk, tile);
    else
        pil_horizontal_generic(src, src_stride, c, rows, dst, dst_stride, n, ksize, bounds, kk);
}

/* Vertical pass: output row j is a weighted sum of input rows, 32 bytes at a time with the accumulators in
 * registers (4 SIMD multiply-adds per tap), then a scalar tail. */
static void pil_vertical(const uint8_t *src, size_t src_stride, size_t row_elems, uint8_t *dst,
                         size_t dst_stride, int n, int ksize, const int32_t *bounds, const int32_t *kk) {
    const int32_t half = 1 << (PIL_PRECISION_BITS - 1);
    for (int j = 0; j < n; j++) {
        const int32_t *k = kk + (size_t)j * (size_t)ksize;
        const uint8_t *s0 = src + (size_t)bounds[2 * j] * src_stride;
        const int taps = bounds[2 * j + 1];
        uint8_t *d = dst + (size_t)j * dst_stride;
        size_t i = 0;
        for (; i + 32 <= row_elems; i += 32) {
            dc_v8i a0 = v8_set1(half), a1 = a0, a2 = a0, a3 = a0;
            const uint8_t *s = s0 + i;
            for (int t = 0; t < taps; t++, s += src_stride) {
                const int32_t w = k[t];
                a0 = v8_madd_u8(a0, s, w);
                a1 = v8_madd_u8(a1, s + 8, w);
                a2 = v8_madd_u8(a2, s + 16, w);
                a3 = v8_madd_u8(a3, s + 24, w);
            }
            v8_store_clip(d + i, a0);
            v8_store_clip(d + i + 8, a1);
            v8_store_clip(d + i + 16, a2);
            v8_store_clip(d + i + 24, a3);
        }
        for (; i < row_elems; i++) {
            int32_t a = half;
            for (int t = 0; t < taps; t++) a += s0[(size_t)t * src_stride + i] * k[t];
            d[i] = pil_clip8(a);
        }
    }
}

size_t dc_resize_scratch_bytes(int w, int h, int c, int out_w, int out_h, int win_w, int win_h) {
    if (w < 1 || h < 1 || c < 1 || out_w < 1 || out_h < 1 || win_w < 1 || win_h < 1) return 0;
    size_t kh = (size_t)pil_ksize(w, out_w), kv = (size_t)pil_ksize(h, out_h);
    size_t ww = (size_t)win_w, wh = (size_t)win_h;
    return align64(2 * ww * 4) + align64(ww * kh * 4) + align64(2 * wh * 4) + align64(wh * kv * 4) +
           align64((size_t)w * DC_TILE_BYTES + 8) + align64((size_t)h * ww * (size_t)c) + 64;
}

int dc_resize_bilinear_u8(const uint8_t *src, int w, int h, int c, size_t src_stride, int out_w, int out_h,
                          int win_x, int win_y, int win_w, int win_h, uint8_t *dst, size_t dst_stride,
                          void *scratch) {
    if (!src || !dst || !scratch) return DC_ERR("dc_resize_bilinear_u8: NULL buffer");
    if (w < 1 || h < 1 || c < 1 || c > DC_MAX_CHANNELS || out_w < 1 || out_h < 1 || win_w < 1 || win_h < 1)
        return DC_ERR("dc_resize_bilinear_u8: bad sizes (in %dx%dx%d, out %dx%d, window %dx%d)", w, h, c,
                      out_w, out_h, win_w, win_h);
    if (win_x < 0 || win_y < 0 || win_x + win_w > out_w || win_y + win_h > out_h)
        return DC_ERR("dc_resize_bilinear_u8: window %dx%d at (%d,%d) outside the %dx%d output", win_w, win_h,
                      win_x, win_y, out_w, out_h);
    if (src_stride < (size_t)w * (size_t)c || dst_stride < (size_t)win_w * (size_t)c)
        return DC_ERR("dc_resize_bilinear_u8: row stride smaller than a row");

    const int need_h = out_w != w, need_v = out_h != h;
    const size_t row_elems = (size_t)win_w * (size_t)c;
    if (!need_h && !need_v) {
        for (int y = 0; y < win_h; y++)
            memcpy(dst + (size_t)y * dst_stride, src + (size_t)(win_y + y) * src_stride + (size_t)win_x * c,
                   row_elems);
        return DC_OK;
    }

    /* Carve the scratch (same layout as dc_resize_scratch_bytes). */
    const int kh = pil_ksize(w, out_w), kv = pil_ksize(h, out_h);
    uint8_t *sp = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    int32_t *bounds_h = (int32_t *)sp;
    sp += align64(2 * (size_t)win_w * 4);
    int32_t *kk_h = (int32_t *)sp;
    sp += align64((size_t)win_w * kh * 4);
    int32_t *bounds_v = (int32_t *)sp;
    sp += align64(2 * (size_t)win_h * 4);
    int32_t *kk_v = (int32_t *)sp;
    sp += align64((size_t)win_h * kv * 4);
    uint8_t *tile = sp;
    sp += align64((size_t)w * DC_TILE_BYTES + 8);
    uint8_t *tmp = sp;

    if (need_h) pil_coeffs(w, out_w, win_x, win_w, kh, bounds_h, kk_h);
    if (!need_v) { /* horizontal only: window rows straight into dst */
        pil_horizontal(src + (size_t)win_y * src_stride, src_stride, c, win_h, dst, dst_stride, win_w, kh,
                       bounds_h, kk_h, tile);
        return DC_OK;
    }
    pil_coeffs(h, out_h, win_y, win_h, kv, bounds_v, kk_v);
    if (!need_h) { /* vertical only: read the window's columns of the source directly */
        pil_vertical(src + (size_t)win_x * c, src_stride, row_elems, dst, dst_stride, win_h, kv, bounds_v,
                     kk_v);
        return DC_OK;
    }
    /* Both: the horizontal pass over just the source rows the window's vertical taps read, then vertical. */
    int y0 = bounds_v[0], y1 = bounds_v[2 * (win_h - 1)] + bounds_v[2 * (win_h - 1) + 1];
    for (int j = 0; j < win_h; j++) bounds_v[2 * j] -= y0;
    pil_horizontal(src + (size_t)y0 * src_stride, src_stride, c, y1 - y0, tmp, row_elems, win_w, kh, bounds_h,
                   kk_h, tile);
    pil_vertical(tmp, row_elems, row_elems, dst, dst_stride, win_h, kv, bounds_v, kk_v);
    return DC_OK;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Colour jitter (PIL ImageEnhance)                                                                        */
/* ------------------------------------------------------------------------------------------------------ */

/* PIL's Image.blend(degenerate, image, alpha) on a whole plane: out = trunc(d + alpha (v - d)) in float32,
 * clipped to [0, 255]. Written so that it vectorises: the same float32 operations, no contraction. */
static void blend_plane(uint8_t *v, size_t n, float degenerate, float alpha) {
    for (size_t i = 0; i < n; i++) {
        float t = degenerate + alpha * ((float)v[i] - degenerate);
        t = t < 0.0f ? 0.0f : t;
        t = t > 255.0f ? 255.0f : t;
        v[i] = (uint8_t)(int32_t)t;
    }
}

void dc_color_jitter_u8(uint8_t *pix, int w, int h, int c, int op, float factor) {
    const size_t n = (size_t)w * (size_t)h;
    uint8_t *r = pix, *g = pix + n, *b = pix + 2 * n;
    switch (op) {
    case DC_JITTER_BRIGHTNESS: /* blend with black */
        for (int ch = 0; ch < c; ch++) blend_plane(pix + (size_t)ch * n, n, 0.0f, factor);
        break;
    case DC_JITTER_CONTRAST: { /* blend with the mean luma, rounded to an integer */
        uint64_t sum = 0;
        if (c == 3) {
            for (size_t i0 = 0; i0 < n; i0 += 4096) { /* int32 partial sums (vectorise), 4096 * 255 fits */
                int32_t part = 0;
                size_t i1 = i0 + 4096 < n ? i0 + 4096 : n;
                for (size_t i = i0; i < i1; i++)
                    part += (r[i] * 19595 + g[i] * 38470 + b[i] * 7471 + 0x8000) >> 16;
                sum += (uint64_t)part;
            }
        } else {
            for (size_t i = 0; i < n; i++) sum += r[i];
        }
        int mean = (int)((double)sum / (double)n + 0.5);
        for (int ch = 0; ch < c; ch++) blend_plane(pix + (size_t)ch * n, n, (float)mean, factor);
        break;
    }
    case DC_JITTER_SATURATION: /* blend with the pixel's own luma; the identity on a grey image */
        if (c != 3) break;
        for (size_t i = 0; i < n; i++) {
            float l = (float)((r[i] * 19595 + g[i] * 38470 + b[i] * 7471 + 0x8000) >> 16);
            float tr = l + factor * ((float)r[i] - l), tg = l + factor * ((float)g[i] - l),
                  tb = l + factor * ((float)b[i] - l);
            tr = tr < 0.0f ? 0.0f : tr, tg = tg < 0.0f ? 0.0f : tg, tb = tb < 0.0f ? 0.0f : tb;
            tr = tr > 255.0f ? 255.0f : tr, tg = tg > 255.0f ? 255.0f : tg, tb = tb > 255.0f ? 255.0f : tb;
            r[i] = (uint8_t)(int32_t)tr, g[i] = (uint8_t)(int32_t)tg, b[i] = (uint8_t)(int32_t)tb;
        }
        break;
    default:
        break;
    }
}

/* ------------------------------------------------------------------------------------------------------ */
/* Transform description, parameters, application                                                          */
/* ------------------------------------------------------------------------------------------------------ */

void dc_transform_from_config(const dc_training_opt *opt, dc_transform *t) {
    memset(t, 0, sizeof *t);
    t->train_aug = opt->augment;
    t->out_size = opt->image_size;
    t->out_channels = opt->in_channels;
    t->resize_size = opt->resize_size;
    t->crop_padding = opt->crop_padding;
    t->hflip = opt->hflip;
    t->color_jitter = opt->color_jitter;
    t->scale_min = 0.08f;
    t->scale_max = 1.0f;
    t->ratio_min = 3.0f / 4.0f;
    t->ratio_max = 4.0f / 3.0f;
    for (int c = 0; c < DC_MAX_CHANNELS; c++) {
        t->mean[c] = opt->mean[c];
        t->std[c] = opt->std[c];
    }
    t->out_channel_stride = 0;
}

int dc_transform_min_side(const dc_transform *t, int train) {
    switch (t->train_aug) {
    case DC_AUG_IMAGENET: /* eval without Resize crops at the stored scale: no DCT scaling */
        return train ? t->out_size : (t->resize_size > 0 ? t->resize_size : 0);
    case DC_AUG_CIFAR:
        return 0; /* pixel-exact crops of small images: decode at full size */
    default:
        return t->out_size;
    }
}

/* The smallest size anything is resized to (out_size, or the eval resize size): it bounds the filter length,
 * so the scratch size. */
static int min_resize_target(const dc_transform *t) {
    int rmin = t->out_size > 0 ? t->out_size : 1;
    if (t->train_aug == DC_AUG_IMAGENET && t->resize_size > 0 && t->resize_size < rmin) rmin = t->resize_size;
    return rmin;
}

/* Scratch layout: the out_size^2 x c working image (HWC), its planes, then the resize scratch (worst case
 * over all parameters). */
size_t dc_transform_scratch_bytes(const dc_transform *t, const dc_image *in) {
    int s = t->out_size > 0 ? t->out_size : 1;
    int c = in->c > 0 ? in->c : 1;
    int w = in->w > 0 ? in->w : 1, h = in->h > 0 ? in->h : 1;
    const int rmin = min_resize_target(t);
    return 2 * align64((size_t)s * (size_t)s * (size_t)c) +
           dc_resize_scratch_bytes(w, h, c, rmin, rmin, s, s) + 64;
}

/* Python's round() (half to even) of a non-negative value, as torchvision's int(round(x)). */
static int round_half_even(double x) {
    return (int)nearbyint(x);
}

/* torchvision RandomResizedCrop.get_params: 10 tries of (area, log-ratio) sampling, then a central crop. */
static void draw_random_resized_crop(const dc_transform *t, int W, int H, dc_rng *r, dc_transform_params *p) {
    double area = (double)W * (double)H;
    double log_rmin = log((double)t->ratio_min), log_rmax = log((double)t->ratio_max);
    for (int attempt = 0; attempt < 10; attempt++) {
        double target_area = area * ((double)t->scale_min +
                                     ((double)t->scale_max - (double)t->scale_min) * dc_rng_uniform_d(r));
        double aspect = exp(log_rmin + (log_rmax - log_rmin) * dc_rng_uniform_d(r));
        int w = round_half_even(sqrt(target_area * aspect));
        int h = round_half_even(sqrt(target_area / aspect));
        if (0 < w && w <= W && 0 < h && h <= H) {
            p->box_y = (int)dc_rng_below(r, (uint64_t)(H - h + 1));
            p->box_x = (int)dc_rng_below(r, (uint64_t)(W - w + 1));
            p->box_w = w;
            p->box_h = h;
            return;
        }
    }
    double in_ratio = (double)W / (double)H;
    int w, h;
    if (in_ratio < (double)t->ratio_min) {
        w = W;
        h = round_half_even(w / (double)t->ratio_min);
    } else if (in_ratio > (double)t->ratio_max) {
        h = H;
        w = round_half_even(h * (double)t->ratio_max);
    } else {
        w = W;
        h = H;
    }
    p->box_x = (W - w) / 2;
    p->box_y = (H - h) / 2;
    p->box_w = w;
    p->box_h = h;
}

/* Evaluation geometry: torchvision Resize(r) (shorter side to r, the longer one int(r * long / short); no
 * resize when r = 0) and CenterCrop(s) (zero padding when the resized image is smaller, then a window at
 * round((size - s) / 2), Python rounding). */
static void eval_resize_center_crop(const dc_transform *t, int W, int H, dc_transform_params *p) {
    int r = t->resize_size, s = t->out_size;
    int nw = W, nh = H;
    if (r > 0) {
        int shorter = W <= H ? W : H, longer = W <= H ? H : W;
        int new_long = (int)((double)((long long)r * longer) / (double)shorter);
        nw = W <= H ? r : new_long;
        nh = W <= H ? new_long : r;
    }
    p->box_x = p->box_y = 0;
    p->box_w = W;
    p->box_h = H;
    p->resize_w = nw;
    p->resize_h = nh;
    p->win_x = s > nw ? -((s - nw) / 2) : round_half_even((nw - s) / 2.0);
    p->win_y = s > nh ? -((s - nh) / 2) : round_half_even((nh - s) / 2.0);
}

static int check_transform(const dc_transform *t) {
    if (t->out_size < 1 || t->out_size > 16384)
        return DC_ERR("image transform: out_size (training_opt.image_size) must be 1..16384, got %d",
                      t->out_size);
    if (t->out_channels != 1 && t->out_channels != 3)
        return DC_ERR("image transform: out_channels (training_opt.in_channels) must be 1 or 3, got %d",
                      t->out_channels);
    for (int c = 0; c < t->out_channels; c++)
        if (!(t->std[c] != 0.0f) || !isfinite(t->std[c]) || !isfinite(t->mean[c]))
            return DC_ERR(
                "image transform: training_opt.std[%d] must be finite and non-zero (mean %g, std %g)", c,
                (double)t->mean[c], (double)t->std[c]);
    return DC_OK;
}

int dc_transform_draw(const dc_transform *t, int in_w, int in_h, int train, uint64_t key,
                      dc_transform_params *p) {
    DC_TRY(check_transform(t));
    if (in_w < 1 || in_h < 1) return DC_ERR("image transform: empty input image (%d x %d)", in_w, in_h);
    const int s = t->out_size;
    memset(p, 0, sizeof *p);
    /* Default: the whole image, resized to s x s (a copy when it already is s x s). */
    p->box_w = in_w;
    p->box_h = in_h;
    p->resize_w = s;
    p->resize_h = s;
    if (!train || t->train_aug == DC_AUG_NONE) {
        if (!train && t->train_aug == DC_AUG_IMAGENET) eval_resize_center_crop(t, in_w, in_h, p);
        return DC_OK;
    }

    /* Three independent streams of one key: crop at counter 0.., flip at 2^40, jitter at 2^41.. */
    dc_rng crop_rng = {key, 0}, flip_rng = {key, 1ULL << 40}, jitter_rng = {key, 2ULL << 40};
    if (t->train_aug == DC_AUG_CIFAR) {
        /* RandomCrop(s, padding): offset i in [0, H + 2 pad - s] of the padded image, i.e. box_y = i - pad.
         */
        int pad = t->crop_padding > 0 ? t->crop_padding : 0;
        int range_x = in_w + 2 * pad - s, range_y = in_h + 2 * pad - s;
        p->box_w = s;
        p->box_h = s;
        p->box_y =
            range_y >= 0 ? (int)dc_rng_below(&crop_rng, (uint64_t)range_y + 1) - pad : range_y / 2 - pad;
        p->box_x =
            range_x >= 0 ? (int)dc_rng_below(&crop_rng, (uint64_t)range_x + 1) - pad : range_x / 2 - pad;
    } else { /* DC_AUG_IMAGENET */
        draw_random_resized_crop(t, in_w, in_h, &crop_rng, p);
        if (t->color_jitter > 0.0f) {
            /* ColorJitter.get_params: a random order, then brightness, contrast, saturation factors, each
             * uniform in [max(0, 1 - j), 1 + j]. */
            int order[3] = {DC_JITTER_BRIGHTNESS, DC_JITTER_CONTRAST, DC_JITTER_SATURATION};
            for (int i = 2; i > 0; i--) {
                int k = (int)dc_rng_below(&jitter_rng, (uint64_t)i + 1);
                int tmp = order[i];
                order[i] = order[k];
                order[k] = tmp;
            }
            float lo = 1.0f - t->color_jitter < 0.0f ? 0.0f : 1.0f - t->color_jitter,
                  hi = 1.0f + t->color_jitter;
            float factor[3];
            for (int i = 0; i < 3; i++) factor[i] = lo + (hi - lo) * dc_rng_uniform(&jitter_rng);
            p->jitter_n = 3;
            for (int i = 0; i < 3; i++) {
                p->jitter_op[i] = order[i];
                p->jitter_factor[i] = factor[order[i]];
            }
        }
    }
    if (t->hflip) p->flip = dc_rng_uniform(&flip_rng) < 0.5f;
    return DC_OK;
}

/* Copies the s x s window of the box (box size == resize size) into work; zeros outside the image/box. */
static void copy_window(const dc_image *in, const dc_transform_params *p, int s, uint8_t *work) {
    const int c = in->c;
    for (int y = 0; y < s; y++) {
        uint8_t *d = work + (size_t)y * s * c;
        int by = p->win_y + y, sy = p->box_y + by; /* row inside the box, row of the image */
        int x0 = 0, x1 = s;                        /* window columns whose source pixel exists */
        if (by < 0 || by >= p->box_h || sy < 0 || sy >= in->h) {
            memset(d, 0, (size_t)s * c);
            continue;
        }
        /* column x reads box column bx = win_x + x and image column box_x + bx */
        int lo = -p->win_x, hi = p->box_w - p->win_x;                      /* box bounds in window columns */
        int lo2 = -p->box_x - p->win_x, hi2 = in->w - p->box_x - p->win_x; /* image bounds */
        if (lo > x0) x0 = lo;
        if (lo2 > x0) x0 = lo2;
        if (hi < x1) x1 = hi;
        if (hi2 < x1) x1 = hi2;
        if (x1 <= x0) {
            memset(d, 0, (size_t)s * c);
            continue;
        }
        memset(d, 0, (size_t)x0 * c);
        memcpy(d + (size_t)x0 * c, in->pix + ((size_t)sy * in->w + (size_t)(p->box_x + p->win_x + x0)) * c,
               (size_t)(x1 - x0) * c);
        memset(d + (size_t)x1 * c, 0, (size_t)(s - x1) * c);
    }
}

/* HWC -> three planes. */
static void deinterleave_rgb(const uint8_t *hwc, size_t n, uint8_t *p0, uint8_t *p1, uint8_t *p2) {
    for (size_t i = 0; i < n; i++) {
        p0[i] = hwc[3 * i];
        p1[i] = hwc[3 * i + 1];
        p2[i] = hwc[3 * i + 2];
    }
}

/* ToTensor + Normalize of one plane: ((float)v / 255 - mean) / std, the operations torch performs (so the
 * floats are identical), mirrored left-right if flip. The colour jitter before it is per pixel or global, so
 * flipping here, last, gives the same image as flipping first. */
static void normalise_plane(const uint8_t *p, int s, int flip, float mean, float std, float *o) {
    for (int y = 0; y < s; y++) {
        const uint8_t *row = p + (size_t)y * s;
        float *orow = o + (size_t)y * s;
        if (flip)
            for (int x = 0; x < s; x++) orow[x] = ((float)row[s - 1 - x] / 255.0f - mean) / std;
        else
            for (int x = 0; x < s; x++) orow[x] = ((float)row[x] / 255.0f - mean) / std;
    }
}

int dc_transform_apply_params(const dc_transform *t, const dc_image *in, const dc_transform_params *p,
                              float *out, void *scratch) {
    DC_TRY(check_transform(t));
    if (!in || !in->pix || in->w < 1 || in->h < 1 || (in->c != 1 && in->c != 3))
        return DC_ERR("image transform: input must be a non-empty 1- or 3-channel image (got %d x %d x %d)",
                      in ? in->w : 0, in ? in->h : 0, in ? in->c : 0);
    if (!out || !scratch) return DC_ERR("image transform: NULL output or scratch");
    const int s = t->out_size;
    int c = in->c;
    if (p->box_w < 1 || p->box_h < 1 || p->resize_w < 1 || p->resize_h < 1 || p->jitter_n < 0 ||
        p->jitter_n > 3)
        return DC_ERR("image transform: invalid parameters (box %dx%d, resize %dx%d, %d jitter ops)",
                      p->box_w, p->box_h, p->resize_w, p->resize_h, p->jitter_n);
    for (int k = 0; k < p->jitter_n; k++)
        if (p->jitter_op[k] < DC_JITTER_BRIGHTNESS || p->jitter_op[k] > DC_JITTER_SATURATION)
            return DC_ERR("image transform: unknown colour-jitter operation %d", p->jitter_op[k]);
    const int resample = p->resize_w != p->box_w || p->resize_h != p->box_h;
    if (resample && (p->resize_w < min_resize_target(t) || p->resize_h < min_resize_target(t)))
        return DC_ERR("image transform: resize to %dx%d is below %d, which the scratch size assumes",
                      p->resize_w, p->resize_h, min_resize_target(t));
    if (resample && (p->box_x < 0 || p->box_y < 0 || (long long)p->box_x + p->box_w > in->w ||
                     (long long)p->box_y + p->box_h > in->h))
        return DC_ERR("image transform: crop box %dx%d at (%d,%d) outside the %dx%d image", p->box_w,
                      p->box_h, p->box_x, p->box_y, in->w, in->h);

    /* scratch: the HWC working image, its planes, the resampler's scratch */
    const size_t n = (size_t)s * (size_t)s;
    uint8_t *work = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    uint8_t *planes = work + align64(n * c);
    void *resize_scratch = planes + align64(n * c);

    if (!resample) {
        copy_window(in, p, s, work);
    } else {
        /* The part of the window inside the resized image; the rest is CenterCrop's zero padding. */
        int x0 = p->win_x < 0 ? -p->win_x : 0, y0 = p->win_y < 0 ? -p->win_y : 0;
        int x1 = p->resize_w - p->win_x < s ? p->resize_w - p->win_x : s;
        int y1 = p->resize_h - p->win_y < s ? p->resize_h - p->win_y : s;
        if (x0 > 0 || y0 > 0 || x1 < s || y1 < s) memset(work, 0, (size_t)s * s * c);
        if (x1 > x0 && y1 > y0) {
            const uint8_t *src = in->pix + ((size_t)p->box_y * in->w + (size_t)p->box_x) * c;
            DC_TRY(dc_resize_bilinear_u8(src, p->box_w, p->box_h, c, (size_t)in->w * c, p->resize_w,
                                         p->resize_h, p->win_x + x0, p->win_y + y0, x1 - x0, y1 - y0,
                                         work + ((size_t)y0 * s + (size_t)x0) * c, (size_t)s * c,
                                         resize_scratch));
        }
    }
    /* planar from here on: colour jitter and normalisation are then plain vectorisable loops */
    if (c == 3)
        deinterleave_rgb(work, n, planes, planes + n, planes + 2 * n);
    else
        planes = work;
    for (int k = 0; k < p->jitter_n; k++)
        dc_color_jitter_u8(planes, s, s, c, p->jitter_op[k], p->jitter_factor[k]);
    const size_t stride = t->out_channel_stride > 0 ? (size_t)t->out_channel_stride : n;
    if (c == 3 && t->out_channels == 1) { /* RGB -> grey: PIL's convert("L"), in place over the R plane */
        for (size_t i = 0; i < n; i++)
            planes[i] =
                (uint8_t)((planes[i] * 19595 + planes[n + i] * 38470 + planes[2 * n + i] * 7471 + 0x8000) >>
                          16);
        c = 1;
    }
    for (int ch = 0; ch < t->out_channels; ch++) /* grey -> RGB replicates the plane */
        normalise_plane(planes + (c == 1 ? 0 : (size_t)ch * n), s, p->flip, t->mean[ch], t->std[ch],
                        out + (size_t)ch * stride);
    return DC_OK;
}

int dc_transform_apply(const dc_transform *t, const dc_image *in, int train, uint64_t key, float *out,
                       void *scratch) {
    if (!in) return DC_ERR("image transform: NULL input image");
    dc_transform_params p;
    DC_TRY(dc_transform_draw(t, in->w, in->h, train, key, &p));
    return dc_transform_apply_params(t, in, &p, out, scratch);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Decode + transform                                                                                      */
/* ------------------------------------------------------------------------------------------------------ */

typedef struct {
    const dc_transform *t;
    int train;
    uint64_t key;
    dc_transform_params p;
} dc_region_ctx;

/* Called by the decoder once the decoded size is known: draw the parameters for that size, and ask for the
 * RandomResizedCrop box only (the other transforms read most of the image anyway). */
static int choose_region(void *vctx, int w, int h, int *x0, int *y0, int *x1, int *y1) {
    dc_region_ctx *ctx = (dc_region_ctx *)vctx;
    DC_TRY(dc_transform_draw(ctx->t, w, h, ctx->train, ctx->key, &ctx->p));
    if (ctx->train && ctx->t->train_aug == DC_AUG_IMAGENET) {
        *x0 = ctx->p.box_x, *y0 = ctx->p.box_y;
        *x1 = ctx->p.box_x + ctx->p.box_w, *y1 = ctx->p.box_y + ctx->p.box_h;
    } else {
        *x0 = 0, *y0 = 0, *x1 = w, *y1 = h;
    }
    return DC_OK;
}

int dc_jpeg_decode_transform(const uint8_t *data, size_t len, const char *what, const dc_transform *t,
                             int train, uint64_t key, dc_image *img, void **scratch, size_t *scratch_cap,
                             float *out) {
    if (!t || !img || !scratch || !scratch_cap || !out)
        return DC_ERR("%s: dc_jpeg_decode_transform: NULL argument", what ? what : "<memory>");
    dc_region_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ctx.t = t, ctx.train = train, ctx.key = key;
    int off_x = 0, off_y = 0;
    DC_TRY(dc_jpeg_decode_region(data, len, what, dc_transform_min_side(t, train), t->out_channels,
                                 choose_region, &ctx, img, &off_x, &off_y));
    ctx.p.box_x -= off_x; /* the box in the coordinates of the decoded region */
    ctx.p.box_y -= off_y;
    size_t need = dc_transform_scratch_bytes(t, img);
    if (!*scratch || *scratch_cap < need) {
        free(*scratch);
        *scratch = malloc(need);
        *scratch_cap = *scratch ? need : 0;
        if (!*scratch)
            return DC_ERR("%s: out of memory allocating %zu bytes of transform scratch", what, need);
    }
    return dc_transform_apply_params(t, img, &ctx.p, out, *scratch);
}
