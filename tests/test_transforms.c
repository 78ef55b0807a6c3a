/*
 * test_transforms.c: the image transforms (datasets/transforms.c, declared in datasets/image.h).
 *
 * What is checked, and against what:
 *  1. golden outputs of torchvision 0.14 + PIL (tests/fixtures/transforms_golden.txt, written by
 *     tests/gen_transform_fixtures.py): Resize + CenterCrop (including Python's round-half-even crop offset,
 *     zero padding, upscaling), CenterCrop alone (resize_size 0), Resize((s, s)), identity, RandomResizedCrop
 * with given boxes (shrinking, enlarging, same size), flips, ColorJitter in three different orders with
 * factors on both sides of 1, a 1-channel image with Fashion-MNIST normalisation, and a real JPEG decoded by
 * dc_jpeg_decode. Tolerance: none. transforms.c re-implements PIL's fixed-point arithmetic, so every float
 * must equal torch's ToTensor + Normalize of the golden byte (the norm tables in the fixture come from torch
 * too). The only exception is the JPEG case, where a different libjpeg-turbo build could round an IDCT output
 *     differently: there at most 1% of the values may differ, by at most 2 levels (0 on Debian 12).
 *  2. the resampler against a naive double-precision evaluation of the same definition (triangle filter
 *     stretched by max(1, in/out), taps normalised) on random sizes and windows: within 1 level (PIL rounds
 *     twice, after each pass).
 *  3. CIFAR pad + crop + flip: exact against a direct computation from the drawn parameters; offsets
 *     uniform over the 2 pad + 1 values (chi-square) and flips with p = 0.5.
 *  4. RandomResizedCrop: boxes inside the image with aspect ratio within the range (up to rounding); with a
 *     range where no attempt is rejected, area fraction and log-ratio are uniform (Kolmogorov-Smirnov) and
 *     the offset is uniform; the central-crop fallback for extreme aspect ratios is exact.
 *  5. ColorJitter draws: factors in [0.6, 1.4] with mean 1, the six orders equally likely (chi-square).
 *  6. determinism: the same key gives bit-identical outputs, other keys give different ones.
 *  7. normalisation: exact ((float)v / 255 - mean) / std for all 256 values, 1 <-> 3 channel conversion,
 *     writing into a CNHW batch with out_channel_stride.
 *  8. scratch: dc_transform_scratch_bytes is enough (canary bytes after it stay intact) and monotone.
 *  9. bad inputs fail with a message that says what is wrong.
 */
#include "core/check.h"
#include "core/rng.h"
#include "datasets/image.h"
#include "tests/testutil.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const float imagenet_mean[3] = {0.485f, 0.456f, 0.406f}, imagenet_std[3] = {0.229f, 0.224f, 0.225f};

/* The fixture generator's pattern: (3 x^2 + 7 y + 85 ch + ((13 x) XOR (29 y))) mod 256. */
static void make_pattern(dc_image *img, int w, int h, int c) {
    img->w = w, img->h = h, img->c = c;
    img->cap = (size_t)w * h * c;
    img->pix = malloc(img->cap);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++)
                img->pix[((size_t)y * w + x) * c + ch] =
                    (uint8_t)((3 * x * x + 7 * y + 85 * ch + ((13 * x) ^ (29 * y))) & 255);
}

static void make_random(dc_image *img, int w, int h, int c, uint64_t key) {
    dc_rng r = dc_rng_make(key);
    img->w = w, img->h = h, img->c = c;
    img->cap = (size_t)w * h * c;
    img->pix = malloc(img->cap);
    for (size_t i = 0; i < img->cap; i++) img->pix[i] = (uint8_t)dc_rng_below(&r, 256);
}

static void base_transform(dc_transform *t, dc_aug_type aug, int size, int channels) {
    memset(t, 0, sizeof *t);
    t->train_aug = aug;
    t->out_size = size;
    t->out_channels = channels;
    t->resize_size = size * 8 / 7;
    t->crop_padding = 4;
    t->hflip = 1;
    t->color_jitter = 0.4f;
    t->scale_min = 0.08f, t->scale_max = 1.0f, t->ratio_min = 3.0f / 4.0f, t->ratio_max = 4.0f / 3.0f;
    for (int c = 0; c < 3; c++) t->mean[c] = imagenet_mean[c], t->std[c] = imagenet_std[c];
}

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    *len = fread(buf, 1, (size_t)n, f);
    fclose(f);
    return buf;
}

/* Runs the transform with scratch followed by canary bytes; checks the canary. */
static int apply_checked(const dc_transform *t, const dc_image *in, const dc_transform_params *p, int train,
                         uint64_t key, float *out) {
    size_t n = dc_transform_scratch_bytes(t, in);
    uint8_t *scratch = malloc(n + 256);
    memset(scratch + n, 0xA5, 256);
    int rc = p ? dc_transform_apply_params(t, in, p, out, scratch)
               : dc_transform_apply(t, in, train, key, out, scratch);
    int canary_ok = 1;
    for (int i = 0; i < 256; i++) canary_ok &= scratch[n + i] == 0xA5;
    EXPECTF(canary_ok, "scratch overrun: dc_transform_scratch_bytes = %zu too small", n);
    free(scratch);
    return rc;
}

/* ---- 1. golden outputs ------------------------------------------------------------------------------- */

typedef struct {
    char name[32];
    int c;
    float mean[3], std[3];
    float lut[3][256];
} golden_norm;

static int hexval(char ch) {
    return ch <= '9' ? ch - '0' : (ch | 32) - 'a' + 10;
}

static void test_golden(void) {
    char path[1024];
    snprintf(path, sizeof path, "%s/transforms_golden.txt", DC_FIXTURES);
    FILE *f = fopen(path, "r");
    REQUIRE(f != NULL);
    static char tok[1 << 16];
    golden_norm norms[4];
    int n_norms = 0, n_cases = 0;
    while (fscanf(f, "%65535s", tok) == 1) {
        if (tok[0] == '#') {
            int ch;
            while ((ch = fgetc(f)) != '\n' && ch != EOF) {
            }
            continue;
        }
        if (!strcmp(tok, "norm")) {
            golden_norm *g = &norms[n_norms++];
            REQUIRE(fscanf(f, "%31s %d", g->name, &g->c) == 2 && g->c >= 1 && g->c <= 3);
            for (int i = 0; i < g->c; i++) REQUIRE(fscanf(f, "%f", &g->mean[i]) == 1);
            for (int i = 0; i < g->c; i++) REQUIRE(fscanf(f, "%f", &g->std[i]) == 1);
            for (int i = 0; i < g->c * 256; i++) REQUIRE(fscanf(f, "%f", &g->lut[i / 256][i % 256]) == 1);
            continue;
        }
        REQUIRE(!strcmp(tok, "case"));
        char name[64], src[32], norm_name[32];
        int W, H, C, aug, train, S, R, OC, bx, by, bw, bh, flip, nj, op[3], nbytes;
        float fac[3];
        REQUIRE(fscanf(f, "%63s %31s %d %d %d %d %d %d %d %d %d %d %d %d %d %d %d %f %d %f %d %f %31s %d",
                       name, src, &W, &H, &C, &aug, &train, &S, &R, &OC, &bx, &by, &bw, &bh, &flip, &nj,
                       &op[0], &fac[0], &op[1], &fac[1], &op[2], &fac[2], norm_name, &nbytes) == 24);
        REQUIRE(fscanf(f, "%65535s", tok) == 1 && (int)strlen(tok) == 2 * nbytes && nbytes == S * S * OC);
        golden_norm *g = NULL;
        for (int i = 0; i < n_norms; i++)
            if (!strcmp(norms[i].name, norm_name)) g = &norms[i];
        REQUIRE(g != NULL && g->c == OC);

        dc_image img = {0};
        int is_jpeg = !strcmp(src, "photo") || !strcmp(src, "cmyk");
        if (is_jpeg) {
            char jp[1024];
            size_t len = 0;
            snprintf(jp, sizeof jp, "%s/jpeg_%s.jpg", DC_FIXTURES, src);
            uint8_t *data = read_file(jp, &len);
            REQUIRE(data != NULL);
            REQUIRE(dc_jpeg_decode(data, len, jp, 0, C, &img) == DC_OK);
            free(data);
            REQUIRE(img.w == W && img.h == H);
        } else {
            make_pattern(&img, W, H, C);
        }
        dc_transform t;
        base_transform(&t, (dc_aug_type)aug, S, OC);
        t.resize_size = R;
        for (int i = 0; i < OC; i++) t.mean[i] = g->mean[i], t.std[i] = g->std[i];
        dc_transform_params p;
        if (!train) {
            REQUIRE(dc_transform_draw(&t, W, H, 0, 0, &p) == DC_OK);
        } else {
            memset(&p, 0, sizeof p);
            p.box_x = bx, p.box_y = by, p.box_w = bw, p.box_h = bh;
            p.resize_w = p.resize_h = S;
            p.flip = flip;
            p.jitter_n = nj;
            for (int k = 0; k < 3; k++) p.jitter_op[k] = op[k], p.jitter_factor[k] = fac[k];
        }
        float *out = malloc(sizeof(float) * S * S * OC);
        REQUIRE(apply_checked(&t, &img, &p, 0, 0, out) == DC_OK);
        int mismatches = 0, worst = 0;
        for (int ch = 0; ch < OC; ch++)
            for (int i = 0; i < S * S; i++) {
                const char *hx = tok + 2 * ((size_t)i * OC + ch);
                int gold = hexval(hx[0]) * 16 + hexval(hx[1]);
                float want = g->lut[ch][gold];
                float got = out[(size_t)ch * S * S + i];
                if (got != want) {
                    mismatches++;
                    int level = (int)lrintf((got * g->std[ch] + g->mean[ch]) * 255.0f); /* the byte we made */
                    if (abs(level - gold) > worst) worst = abs(level - gold);
                }
            }
        if (is_jpeg) {
            EXPECTF(mismatches <= S * S * OC / 100 && worst <= 2,
                    "%s: %d of %d values differ (worst %d levels)", name, mismatches, S * S * OC, worst);
            if (mismatches)
                printf("  note: %s: %d values differ from PIL's decode (libjpeg build?)\n", name, mismatches);
        } else {
            EXPECTF(mismatches == 0, "%s: %d of %d values differ from torchvision (worst %d levels)", name,
                    mismatches, S * S * OC, worst);
        }
        n_cases++;
        free(out);
        dc_image_free(&img);
    }
    fclose(f);
    EXPECTF(n_cases >= 18 && n_norms == 2, "golden file has %d cases, %d norms", n_cases, n_norms);
    printf("golden: %d torchvision cases compared\n", n_cases);
}

/* ---- 2. resampler against the definition ------------------------------------------------------------- */

static double tri(double x) {
    x = fabs(x);
    return x < 1.0 ? 1.0 - x : 0.0;
}

/* Normalised weights of all input pixels for output o of an in -> out axis. */
static void naive_weights(int in, int out, int o, double *wts) {
    double scale = (double)in / out, fs = scale < 1 ? 1 : scale, center = (o + 0.5) * scale, sum = 0;
    for (int x = 0; x < in; x++) sum += wts[x] = tri((x + 0.5 - center) / fs);
    for (int x = 0; x < in; x++) wts[x] /= sum;
}

static void test_resize_vs_naive(void) {
    dc_rng r = dc_rng_make(77);
    int worst = 0, cases = 0;
    for (int it = 0; it < 150; it++) {
        int w = 1 + (int)dc_rng_below(&r, 60), h = 1 + (int)dc_rng_below(&r, 60), c = it % 2 ? 3 : 1;
        int ow = 1 + (int)dc_rng_below(&r, 70), oh = 1 + (int)dc_rng_below(&r, 70);
        int wx = (int)dc_rng_below(&r, (uint64_t)ow), wy = (int)dc_rng_below(&r, (uint64_t)oh);
        int ww = 1 + (int)dc_rng_below(&r, (uint64_t)(ow - wx)),
            wh = 1 + (int)dc_rng_below(&r, (uint64_t)(oh - wy));
        dc_image img;
        make_random(&img, w, h, c, 1000 + it);
        uint8_t *dst = malloc((size_t)ww * wh * c);
        void *scratch = malloc(dc_resize_scratch_bytes(w, h, c, ow, oh, ww, wh));
        REQUIRE(dc_resize_bilinear_u8(img.pix, w, h, c, (size_t)w * c, ow, oh, wx, wy, ww, wh, dst,
                                      (size_t)ww * c, scratch) == DC_OK);
        double *wxs = malloc(sizeof(double) * w), *wys = malloc(sizeof(double) * h);
        for (int y = 0; y < wh; y++) {
            naive_weights(h, oh, wy + y, wys);
            for (int x = 0; x < ww; x++) {
                naive_weights(w, ow, wx + x, wxs);
                for (int ch = 0; ch < c; ch++) {
                    double v = 0;
                    for (int sy = 0; sy < h; sy++)
                        if (wys[sy] != 0)
                            for (int sx = 0; sx < w; sx++)
                                v += wys[sy] * wxs[sx] * img.pix[((size_t)sy * w + sx) * c + ch];
                    int d = abs((int)dst[((size_t)y * ww + x) * c + ch] - (int)lround(v));
                    if (d > worst) worst = d;
                }
            }
        }
        cases++;
        free(wxs), free(wys), free(dst), free(scratch);
        dc_image_free(&img);
    }
    EXPECTF(worst <= 1, "resampler differs from the naive definition by %d levels", worst);
    printf("resize vs naive: %d random cases, worst %d level\n", cases, worst);
}

/* ---- 3. CIFAR pad + crop + flip ------------------------------------------------------------------------ */

static void test_cifar_crop_flip(void) {
    dc_transform t;
    base_transform(&t, DC_AUG_CIFAR, 32, 3);
    const float cmean[3] = {0.4914f, 0.4822f, 0.4465f}, cstd[3] = {0.2023f, 0.1994f, 0.2010f};
    for (int c = 0; c < 3; c++) t.mean[c] = cmean[c], t.std[c] = cstd[c];
    dc_image img;
    make_pattern(&img, 32, 32, 3);
    float out[3 * 32 * 32];
    int counts_x[9] = {0}, counts_y[9] = {0}, flips = 0, bad = 0, n = 2000;
    for (int k = 0; k < n; k++) {
        uint64_t key = dc_rng_key(5, DC_RNG_AUGMENT, 0, (uint64_t)k);
        dc_transform_params p;
        REQUIRE(dc_transform_draw(&t, 32, 32, 1, key, &p) == DC_OK);
        REQUIRE(p.box_x >= -4 && p.box_x <= 4 && p.box_y >= -4 && p.box_y <= 4 && p.box_w == 32 &&
                p.box_h == 32);
        REQUIRE(p.jitter_n == 0);
        counts_x[p.box_x + 4]++, counts_y[p.box_y + 4]++, flips += p.flip;
        if (k < 300) { /* pixel check (the draws above are cheap, the applies less so) */
            REQUIRE(apply_checked(&t, &img, NULL, 1, key, out) == DC_OK);
            for (int ch = 0; ch < 3; ch++)
                for (int y = 0; y < 32; y++)
                    for (int x = 0; x < 32; x++) {
                        int sx = p.box_x + (p.flip ? 31 - x : x), sy = p.box_y + y;
                        int v =
                            sx >= 0 && sx < 32 && sy >= 0 && sy < 32 ? img.pix[(sy * 32 + sx) * 3 + ch] : 0;
                        float want = ((float)v / 255.0f - cmean[ch]) / cstd[ch];
                        bad += out[(ch * 32 + y) * 32 + x] != want;
                    }
        }
    }
    EXPECTF(bad == 0, "%d CIFAR crop/flip values differ from the direct computation", bad);
    /* chi-square with 8 degrees of freedom: P(X > 26.1) = 0.001 */
    double chi_x = 0, chi_y = 0, e = n / 9.0;
    for (int i = 0; i < 9; i++)
        chi_x += (counts_x[i] - e) * (counts_x[i] - e) / e,
            chi_y += (counts_y[i] - e) * (counts_y[i] - e) / e;
    EXPECTF(chi_x < 26.1 && chi_y < 26.1, "crop offsets not uniform: chi2 %.1f %.1f", chi_x, chi_y);
    EXPECTF(fabs(flips - n / 2.0) < 4 * sqrt(n / 4.0), "flip frequency %d / %d", flips, n);
    /* hflip = 0 never flips; an image smaller than the padded crop is centred, never an error */
    t.hflip = 0;
    dc_transform_params p;
    for (int k = 0; k < 50; k++) {
        REQUIRE(dc_transform_draw(&t, 32, 32, 1, (uint64_t)k, &p) == DC_OK);
        EXPECT(p.flip == 0);
    }
    REQUIRE(dc_transform_draw(&t, 20, 10, 1, 3, &p) == DC_OK);
    EXPECT(p.box_x == -6 && p.box_y == -11 && p.box_w == 32);
    dc_image_free(&img);
}

/* ---- 4. RandomResizedCrop ------------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Kolmogorov-Smirnov distance of a sample from U(lo, hi). */
static double ks_uniform(double *v, int n, double lo, double hi) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    double d = 0;
    for (int i = 0; i < n; i++) {
        double cdf = (v[i] - lo) / (hi - lo);
        double a = fabs(cdf - (double)i / n), b = fabs(cdf - (double)(i + 1) / n);
        if (a > d) d = a;
        if (b > d) d = b;
    }
    return d;
}

static void test_random_resized_crop(void) {
    dc_transform t;
    base_transform(&t, DC_AUG_IMAGENET, 224, 3);
    /* (a) default ranges on a 500 x 375 photo: boxes inside, aspect within range up to rounding */
    int bad = 0, whole = 0, n = 20000;
    for (int k = 0; k < n; k++) {
        dc_transform_params p;
        REQUIRE(dc_transform_draw(&t, 500, 375, 1, dc_rng_key(1, DC_RNG_AUGMENT, 3, (uint64_t)k), &p) ==
                DC_OK);
        int ok = p.box_x >= 0 && p.box_y >= 0 && p.box_w >= 1 && p.box_h >= 1 && p.box_x + p.box_w <= 500 &&
                 p.box_y + p.box_h <= 375 && p.resize_w == 224 && p.resize_h == 224;
        ok &= (p.box_w - 0.5) / (p.box_h + 0.5) <= 4.0 / 3.0 + 1e-9 &&
              (p.box_w + 0.5) / (p.box_h - 0.5) >= 0.75 - 1e-9;
        double frac = (double)p.box_w * p.box_h / (500.0 * 375.0);
        ok &= frac <= 1.0 && frac >= 0.08 * 0.95;
        bad += !ok;
        whole += p.box_w == 500 && p.box_h == 375;
    }
    EXPECTF(bad == 0, "%d of %d RandomResizedCrop boxes out of bounds or range", bad, n);
    /* About 40% of single attempts are rejected on a 4:3 image, so after 10 attempts the (whole-image)
     * fallback is rare: ~1e-4. With fewer attempts it would be common. */
    EXPECTF(whole < n / 200, "%d of %d draws fell back to the whole image", whole, n);
    /* (b) scale (0.08, 0.5) on 1000 x 1000: no attempt can be rejected, so the draws are the spec's */
    t.scale_max = 0.5f;
    double *area = malloc(sizeof(double) * n), *logr = malloc(sizeof(double) * n), pos = 0;
    for (int k = 0; k < n; k++) {
        dc_transform_params p;
        REQUIRE(dc_transform_draw(&t, 1000, 1000, 1, dc_rng_key(2, DC_RNG_AUGMENT, 0, (uint64_t)k), &p) ==
                DC_OK);
        area[k] = (double)p.box_w * p.box_h / 1e6;
        logr[k] = log((double)p.box_w / p.box_h);
        pos += (double)p.box_x / (1000 - p.box_w);
    }
    double ks_area = ks_uniform(area, n, 0.08, 0.5),
           ks_ratio = ks_uniform(logr, n, log(0.75), log(4.0 / 3.0));
    double ks_crit = 1.95 / sqrt((double)n) + 0.004; /* alpha = 0.001, plus the pixel rounding of w and h */
    EXPECTF(ks_area < ks_crit, "area fraction not U(0.08, 0.5): KS %.4f >= %.4f", ks_area, ks_crit);
    EXPECTF(ks_ratio < ks_crit, "log aspect ratio not uniform: KS %.4f >= %.4f", ks_ratio, ks_crit);
    EXPECTF(fabs(pos / n - 0.5) < 4 * sqrt(1.0 / 12 / n) + 0.002, "x offset not uniform: mean %.4f", pos / n);
    printf("rrc: KS area %.4f, KS log-ratio %.4f (critical %.4f)\n", ks_area, ks_ratio, ks_crit);
    free(area), free(logr);
    /* (c) fallback: no attempt fits a 1000 x 50 strip, so the central crop with the extreme ratio is used */
    t.scale_max = 1.0f;
    for (int k = 0; k < 20; k++) {
        dc_transform_params p;
        REQUIRE(dc_transform_draw(&t, 1000, 50, 1, (uint64_t)k, &p) == DC_OK);
        EXPECT(p.box_w == 67 && p.box_h == 50 && p.box_x == 466 && p.box_y == 0); /* round(50 * 4/3) = 67 */
        REQUIRE(dc_transform_draw(&t, 50, 1000, 1, (uint64_t)k, &p) == DC_OK);
        EXPECT(p.box_w == 50 && p.box_h == 67 && p.box_x == 0 && p.box_y == 466); /* round(50 / (3/4)) = 67 */
    }
    /* fixed 6 x 6 crops of a 12 x 12 image: all 7 x 7 offsets, uniformly (chi-square, 6 dof, p = 0.001) */
    t.scale_min = t.scale_max = 0.25f, t.ratio_min = t.ratio_max = 1.0f;
    int cx[7] = {0}, cy[7] = {0}, m = 7000, wrong = 0;
    for (int k = 0; k < m; k++) {
        dc_transform_params p;
        REQUIRE(dc_transform_draw(&t, 12, 12, 1, (uint64_t)k + 99, &p) == DC_OK);
        wrong += p.box_w != 6 || p.box_h != 6 || p.box_x < 0 || p.box_x > 6 || p.box_y < 0 || p.box_y > 6;
        if (!wrong) cx[p.box_x]++, cy[p.box_y]++;
    }
    double chi_x = 0, chi_y = 0;
    for (int i = 0; i < 7; i++)
        chi_x += (cx[i] - m / 7.0) * (cx[i] - m / 7.0) / (m / 7.0),
            chi_y += (cy[i] - m / 7.0) * (cy[i] - m / 7.0) / (m / 7.0);
    EXPECTF(wrong == 0 && chi_x < 22.5 && chi_y < 22.5, "crop offsets: %d wrong, chi2 %.1f %.1f", wrong,
            chi_x, chi_y);
    t.scale_min = 0.08f, t.scale_max = 1.0f, t.ratio_min = 0.75f, t.ratio_max = 4.0f / 3.0f;
    /* the flip has its own stream: it does not depend on how many crop attempts were rejected */
    int same_flip = 0;
    for (int k = 0; k < 200; k++) {
        dc_transform_params a, b;
        REQUIRE(dc_transform_draw(&t, 500, 375, 1, (uint64_t)k, &a) == DC_OK);
        REQUIRE(dc_transform_draw(&t, 1000, 50, 1, (uint64_t)k, &b) == DC_OK);
        same_flip += a.flip == b.flip;
    }
    EXPECT(same_flip == 200);
}

/* ---- 5. ColorJitter draws ------------------------------------------------------------------------------ */

static void test_jitter_draws(void) {
    dc_transform t;
    base_transform(&t, DC_AUG_IMAGENET, 224, 3);
    int n = 6000, orders[27] = {0}, bad = 0;
    double sum[3] = {0};
    for (int k = 0; k < n; k++) {
        dc_transform_params p;
        REQUIRE(dc_transform_draw(&t, 300, 200, 1, (uint64_t)k * 7919, &p) == DC_OK);
        REQUIRE(p.jitter_n == 3);
        int seen = 0;
        for (int i = 0; i < 3; i++) {
            seen |= 1 << p.jitter_op[i];
            bad += !(p.jitter_factor[i] >= 0.6f && p.jitter_factor[i] <= 1.4f);
            sum[p.jitter_op[i]] += p.jitter_factor[i];
        }
        bad += seen != 7;
        orders[p.jitter_op[0] * 9 + p.jitter_op[1] * 3 + p.jitter_op[2]]++;
    }
    EXPECTF(bad == 0, "%d bad jitter draws", bad);
    double chi = 0, e = n / 6.0;
    int distinct = 0;
    for (int i = 0; i < 27; i++)
        if (orders[i]) distinct++, chi += (orders[i] - e) * (orders[i] - e) / e;
    EXPECTF(distinct == 6 && chi < 20.5, "jitter orders not uniform: %d distinct, chi2 %.1f", distinct,
            chi); /* 5 dof, p=0.001 */
    for (int i = 0; i < 3; i++)
        EXPECTF(fabs(sum[i] / n - 1.0) < 4 * 0.8 / sqrt(12.0 * n), "factor %d mean %.4f", i, sum[i] / n);
    t.color_jitter = 0;
    dc_transform_params p;
    REQUIRE(dc_transform_draw(&t, 300, 200, 1, 1, &p) == DC_OK);
    EXPECT(p.jitter_n == 0);
}

/* ---- 6. determinism --------------------------------------------------------------------------------------
 */

static void test_determinism(void) {
    dc_transform t;
    base_transform(&t, DC_AUG_IMAGENET, 64, 3);
    dc_image img;
    make_pattern(&img, 97, 71, 3);
    const size_t n = 3 * 64 * 64;
    float *a = malloc(n * sizeof(float)), *b = malloc(n * sizeof(float)), *c = malloc(n * sizeof(float));
    uint64_t key = dc_rng_key(42, DC_RNG_AUGMENT, 1, 12345);
    REQUIRE(apply_checked(&t, &img, NULL, 1, key, a) == DC_OK);
    REQUIRE(apply_checked(&t, &img, NULL, 1, key, b) == DC_OK);
    EXPECT(memcmp(a, b, n * sizeof(float)) == 0);
    dc_transform_params p;
    REQUIRE(dc_transform_draw(&t, img.w, img.h, 1, key, &p) == DC_OK);
    REQUIRE(apply_checked(&t, &img, &p, 0, 0, c) == DC_OK);
    EXPECT(memcmp(a, c, n * sizeof(float)) == 0);
    int same = 0;
    for (uint64_t s = 0; s < 20; s++) {
        REQUIRE(apply_checked(&t, &img, NULL, 1, dc_rng_key(42, DC_RNG_AUGMENT, 1, 20000 + s), b) == DC_OK);
        same += memcmp(a, b, n * sizeof(float)) == 0;
    }
    EXPECTF(same == 0, "%d of 20 other keys gave the same augmentation", same);
    /* evaluation ignores the key */
    REQUIRE(apply_checked(&t, &img, NULL, 0, 1, a) == DC_OK);
    REQUIRE(apply_checked(&t, &img, NULL, 0, 2, b) == DC_OK);
    EXPECT(memcmp(a, b, n * sizeof(float)) == 0);
    free(a), free(b), free(c);
    dc_image_free(&img);
}

/* ---- 7. normalisation and channels -----------------------------------------------------------------------
 */

static void test_normalisation(void) {
    dc_transform t;
    base_transform(&t, DC_AUG_NONE, 16, 3);
    dc_image img = {16, 16, 3, malloc(16 * 16 * 3), 16 * 16 * 3};
    for (int i = 0; i < 256; i++)
        for (int ch = 0; ch < 3; ch++) img.pix[i * 3 + ch] = (uint8_t)((i + 77 * ch) & 255);
    float out[3 * 256];
    REQUIRE(apply_checked(&t, &img, NULL, 1, 9, out) == DC_OK); /* none: identity geometry even in training */
    int bad = 0;
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < 256; i++) {
            float want = ((float)img.pix[i * 3 + ch] / 255.0f - imagenet_mean[ch]) / imagenet_std[ch];
            bad += out[ch * 256 + i] != want;
        }
    EXPECTF(bad == 0, "%d normalised values differ from ((float)v / 255 - mean) / std", bad);

    /* RGB -> 1 channel: PIL's luma, Fashion-MNIST normalisation */
    t.out_channels = 1;
    t.mean[0] = 0.2860f, t.std[0] = 0.3530f;
    REQUIRE(apply_checked(&t, &img, NULL, 0, 0, out) == DC_OK);
    bad = 0;
    for (int i = 0; i < 256; i++) {
        const uint8_t *px = img.pix + 3 * i;
        int l = (px[0] * 19595 + px[1] * 38470 + px[2] * 7471 + 32768) >> 16;
        bad += out[i] != ((float)l / 255.0f - 0.2860f) / 0.3530f;
    }
    EXPECTF(bad == 0, "%d RGB -> grey values wrong", bad);

    /* grey -> 3 channels: replicated, each with its own mean/std */
    dc_image grey = {16, 16, 1, malloc(256), 256};
    for (int i = 0; i < 256; i++) grey.pix[i] = (uint8_t)(255 - i);
    base_transform(&t, DC_AUG_NONE, 16, 3);
    REQUIRE(apply_checked(&t, &grey, NULL, 0, 0, out) == DC_OK);
    bad = 0;
    for (int ch = 0; ch < 3; ch++)
        for (int i = 0; i < 256; i++)
            bad += out[ch * 256 + i] != ((float)(255 - i) / 255.0f - imagenet_mean[ch]) / imagenet_std[ch];
    EXPECTF(bad == 0, "%d grey -> RGB values wrong", bad);

    /* CNHW batch: sample 1 of 3, channel planes 3 * 256 apart; nothing else written */
    float *batch = malloc(sizeof(float) * 3 * 3 * 256);
    for (int i = 0; i < 3 * 3 * 256; i++) batch[i] = NAN;
    t.out_channel_stride = 3 * 256;
    REQUIRE(apply_checked(&t, &grey, NULL, 0, 0, batch + 256) == DC_OK);
    int placed = 0, untouched = 0;
    for (int ch = 0; ch < 3; ch++)
        for (int n = 0; n < 3; n++)
            for (int i = 0; i < 256; i++) {
                float v = batch[(ch * 3 + n) * 256 + i];
                if (n == 1)
                    placed += v == out[ch * 256 + i];
                else
                    untouched += isnan(v);
            }
    EXPECT(placed == 3 * 256 && untouched == 2 * 3 * 256);
    free(batch);
    dc_image_free(&img);
    dc_image_free(&grey);
}

/* ---- 8. scratch ------------------------------------------------------------------------------------------
 */

static void test_scratch(void) {
    /* every mode, train and eval, odd sizes: apply_checked verifies the canary */
    const dc_aug_type augs[3] = {DC_AUG_NONE, DC_AUG_CIFAR, DC_AUG_IMAGENET};
    const int sizes[5][2] = {{500, 375}, {31, 200}, {1, 1}, {224, 224}, {1200, 90}};
    float *out = malloc(sizeof(float) * 3 * 96 * 96);
    for (int a = 0; a < 3; a++)
        for (int s = 0; s < 5; s++)
            for (int c = 1; c <= 3; c += 2) {
                dc_transform t;
                base_transform(&t, augs[a], 96, 3);
                dc_image img;
                make_random(&img, sizes[s][0], sizes[s][1], c, 3);
                for (int k = 0; k < 4; k++)
                    REQUIRE(apply_checked(&t, &img, NULL, k & 1, (uint64_t)k, out) == DC_OK);
                t.resize_size = 40; /* eval resize smaller than the crop: padding */
                REQUIRE(apply_checked(&t, &img, NULL, 0, 0, out) == DC_OK);
                dc_image_free(&img);
            }
    free(out);
    dc_transform t;
    base_transform(&t, DC_AUG_IMAGENET, 224, 3);
    size_t prev = 0;
    int monotone = 1;
    for (int w = 1; w < 2000; w += 37) {
        dc_image img = {w, w * 3 / 4 + 1, 3, NULL, 0};
        size_t n = dc_transform_scratch_bytes(&t, &img);
        monotone &= n >= prev;
        prev = n;
    }
    EXPECT(monotone);
}

/* ---- 9. bad inputs and misc ------------------------------------------------------------------------------
 */

static void test_bad_inputs(void) {
    dc_transform t;
    base_transform(&t, DC_AUG_IMAGENET, 32, 3);
    dc_image img;
    make_pattern(&img, 40, 30, 3);
    float out[3 * 32 * 32];
    uint8_t scratch[1 << 16];
    dc_image two = img;
    two.c = 2;
    EXPECT(dc_transform_apply(&t, &two, 0, 0, out, scratch) == DC_FAIL);
    EXPECT(strstr(dc_last_error(), "1- or 3-channel") != NULL);
    dc_transform_params p;
    REQUIRE(dc_transform_draw(&t, 40, 30, 1, 1, &p) == DC_OK);
    p.box_x = 30, p.box_w = 20; /* 30 + 20 > 40 */
    EXPECT(dc_transform_apply_params(&t, &img, &p, out, scratch) == DC_FAIL);
    EXPECT(strstr(dc_last_error(), "outside the 40x30 image") != NULL);
    REQUIRE(dc_transform_draw(&t, 40, 30, 1, 1, &p) == DC_OK);
    p.resize_w = 5; /* below out_size: the scratch is not sized for such long filters */
    EXPECT(dc_transform_apply_params(&t, &img, &p, out, scratch) == DC_FAIL &&
           strstr(dc_last_error(), "below 32"));
    REQUIRE(dc_transform_draw(&t, 40, 30, 1, 1, &p) == DC_OK);
    p.jitter_n = 1, p.jitter_op[0] = 7;
    EXPECT(dc_transform_apply_params(&t, &img, &p, out, scratch) == DC_FAIL &&
           strstr(dc_last_error(), "jitter"));
    dc_transform bad = t;
    bad.std[1] = 0;
    EXPECT(dc_transform_apply(&bad, &img, 0, 0, out, scratch) == DC_FAIL);
    EXPECT(strstr(dc_last_error(), "std[1]") != NULL);
    bad = t;
    bad.out_size = 0;
    EXPECT(dc_transform_draw(&bad, 40, 30, 0, 0, &p) == DC_FAIL);
    EXPECT(strstr(dc_last_error(), "image_size") != NULL);
    bad = t;
    bad.out_channels = 2;
    EXPECT(dc_transform_apply(&bad, &img, 0, 0, out, scratch) == DC_FAIL);
    EXPECT(strstr(dc_last_error(), "in_channels") != NULL);
    EXPECT(dc_resize_bilinear_u8(img.pix, 40, 30, 3, 120, 20, 20, 10, 0, 11, 20, scratch, 33,
                                 scratch + 4096) == DC_FAIL);
    EXPECT(strstr(dc_last_error(), "outside") != NULL);
    dc_image_free(&img);

    /* the decoder hints */
    base_transform(&t, DC_AUG_IMAGENET, 224, 3);
    t.resize_size = 256;
    EXPECT(dc_transform_min_side(&t, 1) == 224 && dc_transform_min_side(&t, 0) == 256);
    t.resize_size = 0; /* CenterCrop without Resize: the stored scale matters */
    EXPECT(dc_transform_min_side(&t, 0) == 0);
    t.train_aug = DC_AUG_CIFAR;
    EXPECT(dc_transform_min_side(&t, 1) == 0 && dc_transform_min_side(&t, 0) == 0);
    t.train_aug = DC_AUG_NONE;
    EXPECT(dc_transform_min_side(&t, 1) == 224);

    /* from_config copies what it should */
    dc_training_opt opt;
    memset(&opt, 0, sizeof opt);
    opt.augment = DC_AUG_IMAGENET, opt.image_size = 224, opt.resize_size = 256, opt.in_channels = 3;
    opt.crop_padding = 4, opt.hflip = 1, opt.color_jitter = 0.4f;
    for (int c = 0; c < 3; c++) opt.mean[c] = imagenet_mean[c], opt.std[c] = imagenet_std[c];
    dc_transform_from_config(&opt, &t);
    EXPECT(t.train_aug == DC_AUG_IMAGENET && t.out_size == 224 && t.resize_size == 256 &&
           t.out_channels == 3);
    EXPECT(t.scale_min == 0.08f && t.scale_max == 1.0f && t.ratio_min == 0.75f && t.color_jitter == 0.4f);
    EXPECT(t.mean[2] == 0.406f && t.std[0] == 0.229f && t.out_channel_stride == 0);
}

int main(void) {
    test_golden();
    test_resize_vs_naive();
    test_cifar_crop_flip();
    test_random_resized_crop();
    test_jitter_draws();
    test_determinism();
    test_normalisation();
    test_scratch();
    test_bad_inputs();
    return tu_finish("test_transforms");
}
