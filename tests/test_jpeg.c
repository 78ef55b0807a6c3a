/*
 * test_jpeg.c: JPEG decoding and encoding (datasets/jpeg.c, declared in datasets/image.h).
 *
 * What is checked, and against what:
 *  1. round trips through libjpeg at quality 95 (dc_jpeg_encode, then dc_jpeg_decode): a smooth gradient,
 *     a blocky random image and a textured image, RGB and grey, PSNR > 30 dB against the original; grey
 *     decoded to 3 channels is the 1-channel decode replicated; colour decoded to 1 channel is close to the
 *     luma of the colour decode.
 *  2. CMYK files written here with libjpeg (jpeg_set_colorspace JCS_CMYK / JCS_YCCK): Adobe files (inverted,
 *     Photoshop's convention), a plain CMYK file without the Adobe marker (not inverted) and YCCK, each
 *     decoded to RGB with PSNR > 30 dB against R = 255 (1 - C)(1 - K) computed here in double precision.
 *  3. DCT scaling: the decoded size is ceil(W M / 8) x ceil(H M / 8) for the smallest M in {1, 2, 4, 8}
 *     whose shorter side reaches min_side (computed here independently), and the 1/2-scale decode matches a
 * 2x2 box average of the full decode (PSNR > 30 dB).
 *  4. corrupt data never crashes and always fails with a message naming the source: truncation at ~100
 *     points (including inside the final marker, which libjpeg itself would only warn about), random bytes,
 *     a PNG file, an empty buffer, garbage after a valid SOI, truncated progressive files; bit flips in the
 *     entropy-coded data either fail the same way or decode (never crash).
 *  5. size limits: a header claiming 40000 x 40000 or 20000 x 20000 pixels is refused before allocating.
 *  6. buffer reuse: the pixel buffer is kept when it is big enough and grown when not; dc_jpeg_info.
 *  7. dc_jpeg_decode_transform (partial decoding of the RandomResizedCrop box) gives bit-identical outputs to
 *     a full decode followed by the transform, on 4:2:0, 4:2:2, 4:4:4, grey and progressive files, at full
 *     and DCT-reduced scales, for the imagenet, cifar and none transforms; a partial decode does happen;
 *     truncation below the decoded region is still an error.
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

#include <jpeglib.h>

static double psnr(const uint8_t *a, const uint8_t *b, size_t n) {
    double se = 0;
    for (size_t i = 0; i < n; i++) se += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
    if (se == 0) return 99.0;
    return 10.0 * log10(255.0 * 255.0 / (se / (double)n));
}

static void alloc_image(dc_image *img, int w, int h, int c) {
    img->w = w, img->h = h, img->c = c;
    img->cap = (size_t)w * h * c;
    img->pix = malloc(img->cap);
}

/* kind 0: smooth gradient; 1: random: random colours on a 16-pixel grid, bilinearly interpolated, plus
 * per-pixel random brightness noise of +-24 (colour white noise would only measure how much 4:2:0 chroma
 * subsampling loses, by design); 2: texture (sinusoids of several frequencies). */
static void make_image(dc_image *img, int w, int h, int c, int kind, uint64_t key) {
    alloc_image(img, w, h, c);
    dc_rng r = dc_rng_make(key);
    uint8_t block[64][64][3];
    for (int by = 0; by < 64; by++)
        for (int bx = 0; bx < 64; bx++)
            for (int ch = 0; ch < 3; ch++) block[by][bx][ch] = (uint8_t)dc_rng_below(&r, 256);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int ch = 0; ch < c; ch++) {
                double v;
                if (kind == 0)
                    v = 255.0 * (x + y + 40 * ch) / (w + h + 80);
                else if (kind == 1) {
                    int gx = x / 16 % 63, gy = y / 16 % 63;
                    double fx = (x % 16) / 16.0, fy = (y % 16) / 16.0;
                    double colour = (1 - fy) * ((1 - fx) * block[gy][gx][ch] + fx * block[gy][gx + 1][ch]) +
                                    fy * ((1 - fx) * block[gy + 1][gx][ch] + fx * block[gy + 1][gx + 1][ch]);
                    v = 30 + colour * 170.0 / 255.0 + (double)(dc_rng_at(key, (uint64_t)y * w + x) % 49) -
                        24.0;
                } else
                    v = 128 + 60 * sin(x * 0.21 + ch) * cos(y * 0.13) + 40 * sin((x + 2 * y) * 0.05 + ch * 2);
                img->pix[((size_t)y * w + x) * c + ch] = (uint8_t)lrint(v < 0 ? 0 : v > 255 ? 255 : v);
            }
}

static int has(const char *needle) {
    return strstr(dc_last_error(), needle) != NULL;
}

/* ---- 1. round trips ------------------------------------------------------------------------------------ */

static void test_roundtrip(void) {
    const char *names[3] = {"gradient", "random", "texture"};
    for (int kind = 0; kind < 3; kind++)
        for (int c = 1; c <= 3; c += 2) {
            dc_image src, dec = {0};
            make_image(&src, 97, 61, c, kind, 11 + kind);
            uint8_t *jpg = NULL;
            size_t len = 0;
            REQUIRE(dc_jpeg_encode(&src, 95, &jpg, &len) == DC_OK && len > 100);
            REQUIRE(dc_jpeg_decode(jpg, len, "roundtrip.jpg", 0, c, &dec) == DC_OK);
            REQUIRE(dec.w == 97 && dec.h == 61 && dec.c == c);
            double p = psnr(src.pix, dec.pix, src.cap);
            EXPECTF(p > 30.0, "%s, %d channel(s): PSNR %.1f dB", names[kind], c, p);
            printf("roundtrip %-13s c=%d: %zu bytes, PSNR %.1f dB\n", names[kind], c, len, p);
            if (c == 1) { /* grey replicated to RGB */
                dc_image rgb = {0};
                REQUIRE(dc_jpeg_decode(jpg, len, "grey.jpg", 0, 3, &rgb) == DC_OK && rgb.c == 3);
                int bad = 0;
                for (size_t i = 0; i < dec.cap; i++)
                    for (int ch = 0; ch < 3; ch++) bad += rgb.pix[3 * i + ch] != dec.pix[i];
                EXPECTF(bad == 0, "grey -> RGB: %d values not replicated", bad);
                dc_image_free(&rgb);
            } else { /* colour to 1 channel: libjpeg's luma, close to PIL's luma of the RGB decode */
                dc_image grey = {0};
                REQUIRE(dc_jpeg_decode(jpg, len, "colour.jpg", 0, 1, &grey) == DC_OK && grey.c == 1);
                double mad = 0;
                for (size_t i = 0; i < grey.cap; i++) {
                    const uint8_t *px = dec.pix + 3 * i;
                    mad += fabs(grey.pix[i] - (0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]));
                }
                mad /= (double)grey.cap;
                EXPECTF(mad < 2.0, "colour -> grey: mean |diff| to luma %.2f", mad);
                dc_image_free(&grey);
            }
            free(jpg);
            dc_image_free(&src);
            dc_image_free(&dec);
        }
}

/* ---- 2. CMYK / YCCK --------------------------------------------------------------------------------------
 */

/* Writes a CMYK image (4 bytes per pixel, already in the polarity the file should hold) as JPEG. */
static uint8_t *write_cmyk(const uint8_t *cmyk, int w, int h, J_COLOR_SPACE file_space, int adobe,
                           size_t *len) {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    unsigned char *buf = NULL;
    unsigned long size = 0;
    jpeg_mem_dest(&ci, &buf, &size);
    ci.image_width = (JDIMENSION)w, ci.image_height = (JDIMENSION)h;
    ci.input_components = 4;
    ci.in_color_space = JCS_CMYK;
    jpeg_set_defaults(&ci);
    jpeg_set_colorspace(&ci, file_space);
    ci.write_Adobe_marker = adobe ? TRUE : FALSE;
    jpeg_set_quality(&ci, 95, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = (JSAMPROW)(cmyk + (size_t)ci.next_scanline * w * 4);
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    *len = size;
    return buf;
}

static void test_cmyk(void) {
    const int w = 80, h = 56;
    uint8_t *ink = malloc((size_t)w * h * 4), *stored = malloc((size_t)w * h * 4),
            *want = malloc((size_t)w * h * 3);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = ink + ((size_t)y * w + x) * 4;
            p[0] = (uint8_t)(x * 255 / (w - 1)), p[1] = (uint8_t)(y * 255 / (h - 1));
            p[2] = (uint8_t)(128 + 100 * sin(x * 0.1)), p[3] = (uint8_t)((x + y) * 120 / (w + h));
            for (int ch = 0; ch < 3; ch++) /* R = 255 (1 - C)(1 - K) */
                want[((size_t)y * w + x) * 3 + ch] =
                    (uint8_t)lrint(255.0 * (1 - p[ch] / 255.0) * (1 - p[3] / 255.0));
        }
    struct {
        const char *name;
        J_COLOR_SPACE space;
        int adobe, inverted;
    } cases[3] = {{"CMYK, Adobe (inverted)", JCS_CMYK, 1, 1},
                  {"CMYK, no Adobe marker", JCS_CMYK, 0, 0},
                  {"YCCK, Adobe (inverted)", JCS_YCCK, 1, 1}};
    for (int k = 0; k < 3; k++) {
        for (size_t i = 0; i < (size_t)w * h * 4; i++)
            stored[i] = cases[k].inverted ? (uint8_t)(255 - ink[i]) : ink[i];
        size_t len = 0;
        uint8_t *jpg = write_cmyk(stored, w, h, cases[k].space, cases[k].adobe, &len);
        int iw, ih, ic;
        REQUIRE(dc_jpeg_info(jpg, len, "cmyk.jpg", &iw, &ih, &ic) == DC_OK);
        EXPECT(iw == w && ih == h && ic == 4);
        dc_image dec = {0};
        REQUIRE(dc_jpeg_decode(jpg, len, "cmyk.jpg", 0, 3, &dec) == DC_OK);
        REQUIRE(dec.w == w && dec.h == h && dec.c == 3);
        double p = psnr(dec.pix, want, (size_t)w * h * 3);
        EXPECTF(p > 30.0, "%s: PSNR %.1f dB against the intended RGB", cases[k].name, p);
        printf("%s: PSNR %.1f dB\n", cases[k].name, p);
        dc_image grey = {0};
        REQUIRE(dc_jpeg_decode(jpg, len, "cmyk.jpg", 0, 1, &grey) == DC_OK && grey.c == 1);
        int bad = 0;
        for (size_t i = 0; i < (size_t)w * h; i++) {
            const uint8_t *px = dec.pix + 3 * i;
            bad += grey.pix[i] != ((px[0] * 19595 + px[1] * 38470 + px[2] * 7471 + 32768) >> 16);
        }
        EXPECTF(bad == 0, "%s to grey: %d pixels differ from the luma of the RGB decode", cases[k].name, bad);
        free(jpg);
        dc_image_free(&dec);
        dc_image_free(&grey);
    }
    free(ink), free(stored), free(want);
}

/* ---- 3. DCT scaling --------------------------------------------------------------------------------------
 */

static void test_dct_scaling(void) {
    const int W = 500, H = 375;
    dc_image src, full = {0}, half = {0};
    make_image(&src, W, H, 3, 2, 5);
    uint8_t *jpg;
    size_t len;
    REQUIRE(dc_jpeg_encode(&src, 95, &jpg, &len) == DC_OK);
    const int mins[] = {0, 1, 47, 48, 94, 95, 187, 188, 189, 224, 300, 375, 376, 5000};
    int bad = 0;
    for (size_t i = 0; i < sizeof mins / sizeof mins[0]; i++) {
        int m = 8; /* independent: the smallest M/8, M in {1, 2, 4, 8}, with ceil(H M / 8) >= min_side */
        if (mins[i] > 0)
            for (m = 1; m < 8 && (H * m + 7) / 8 < mins[i]; m *= 2) {
            }
        dc_image img = {0};
        REQUIRE(dc_jpeg_decode(jpg, len, "scaled.jpg", mins[i], 3, &img) == DC_OK);
        int ok = img.w == (W * m + 7) / 8 && img.h == (H * m + 7) / 8;
        if (!ok) fprintf(stderr, "min_side %d: got %d x %d, want M = %d\n", mins[i], img.w, img.h, m);
        bad += !ok;
        dc_image_free(&img);
    }
    EXPECTF(bad == 0, "%d DCT-scaled sizes wrong", bad);
    /* content: the 1/2 decode against a 2x2 box average of the full decode */
    REQUIRE(dc_jpeg_decode(jpg, len, "scaled.jpg", 0, 3, &full) == DC_OK);
    REQUIRE(dc_jpeg_decode(jpg, len, "scaled.jpg", 188, 3, &half) == DC_OK && half.w == 250 && half.h == 188);
    uint8_t *box = malloc((size_t)250 * 187 * 3);
    for (int y = 0; y < 187; y++)
        for (int x = 0; x < 250; x++)
            for (int ch = 0; ch < 3; ch++) {
                int s = 0;
                for (int dy = 0; dy < 2; dy++)
                    for (int dx = 0; dx < 2; dx++)
                        s += full.pix[((size_t)(2 * y + dy) * W + 2 * x + dx) * 3 + ch];
                box[((size_t)y * 250 + x) * 3 + ch] = (uint8_t)((s + 2) / 4);
            }
    double p = psnr(box, half.pix, (size_t)250 * 187 * 3); /* the last (partial) row is left out */
    EXPECTF(p > 30.0, "1/2-scale decode vs 2x2 average of the full decode: PSNR %.1f dB", p);
    printf("DCT scaling: 1/2 decode vs 2x2 box average of the full decode: PSNR %.1f dB\n", p);
    free(box), free(jpg);
    dc_image_free(&src), dc_image_free(&full), dc_image_free(&half);
}

/* ---- 4. corrupt data -------------------------------------------------------------------------------------
 */

static int decode_fails_naming(const uint8_t *data, size_t len, const char *what) {
    dc_image img = {0};
    dc_clear_error();
    int rc = dc_jpeg_decode(data, len, what, 0, 3, &img);
    dc_image_free(&img);
    return rc == DC_FAIL && has(what);
}

static void test_corrupt(void) {
    dc_image src;
    make_image(&src, 120, 90, 3, 2, 9);
    uint8_t *jpg;
    size_t len;
    REQUIRE(dc_jpeg_encode(&src, 90, &jpg, &len) == DC_OK);
    /* truncation: ~100 cut points, plus the last bytes (inside the EOI marker) */
    int cuts = 0, failed = 0;
    for (size_t cut = 0; cut < len; cut += len / 97 + 1)
        cuts++, failed += decode_fails_naming(jpg, cut, "cut.jpg");
    for (size_t k = 1; k <= 3; k++) cuts++, failed += decode_fails_naming(jpg, len - k, "cut.jpg");
    EXPECTF(failed == cuts, "%d of %d truncated files failed with a message naming the file", failed, cuts);
    EXPECT(decode_fails_naming(jpg, len - 1, "cut.jpg") && has("Premature end"));
    EXPECT(decode_fails_naming(jpg, 0, "empty.jpg") && has("empty"));
    dc_image img = {0};
    EXPECT(dc_jpeg_decode(NULL, 10, "null.jpg", 0, 3, &img) == DC_FAIL && has("null.jpg"));
    EXPECT(dc_jpeg_decode(jpg, len, NULL, 0, 3, &img) == DC_OK); /* the full file is fine; what may be NULL */
    EXPECT(dc_jpeg_decode(jpg, len, "x.jpg", 0, 2, &img) == DC_FAIL && has("out_channels"));
    dc_image_free(&img);

    /* random bytes, random bytes after a valid SOI, a PNG file */
    dc_rng r = dc_rng_make(3);
    uint8_t junk[4096];
    int junk_failed = 0;
    for (int k = 0; k < 50; k++) {
        size_t n = 1 + (size_t)dc_rng_below(&r, sizeof junk);
        for (size_t i = 0; i < n; i++) junk[i] = (uint8_t)dc_rng_below(&r, 256);
        if (k % 2) junk[0] = 0xFF, junk[1] = 0xD8;
        junk_failed += decode_fails_naming(junk, n, "junk.bin");
    }
    EXPECTF(junk_failed == 50, "%d of 50 random buffers failed cleanly", junk_failed);
    static const uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0,    0,    0,
                                  13,   'I', 'H', 'D', 'R',  0,    0,    0,    16,   0,    0,
                                  0,    16,  8,   2,   0,    0,    0,    0x90, 0x91, 0x68, 0x36};
    EXPECT(decode_fails_naming(png, sizeof png, "n02105855_2933.JPEG") && has("Not a JPEG"));
    int w, h, c;
    EXPECT(dc_jpeg_info(png, sizeof png, "info.png", &w, &h, &c) == DC_FAIL && has("info.png"));

    /* bit flips after the headers: decode or fail cleanly, never crash */
    size_t sos = 0;
    for (size_t i = 0; i + 1 < len; i++)
        if (jpg[i] == 0xFF && jpg[i + 1] == 0xDA) sos = i;
    REQUIRE(sos > 0);
    uint8_t *copy = malloc(len);
    int flip_failed = 0, flip_clean = 1;
    for (int k = 0; k < 200; k++) {
        memcpy(copy, jpg, len);
        for (int f = 0; f < 1 + k % 4; f++) {
            size_t pos = sos + 14 + (size_t)dc_rng_below(&r, len - sos - 16);
            copy[pos] ^= (uint8_t)(1u << dc_rng_below(&r, 8));
        }
        dc_image out = {0};
        dc_clear_error();
        if (dc_jpeg_decode(copy, len, "flipped.jpg", 0, 3, &out) != DC_OK)
            flip_failed++, flip_clean &= has("flipped.jpg");
        dc_image_free(&out);
    }
    EXPECT(flip_clean);
    printf("corruption: %d truncations and 50 junk buffers rejected; %d of 200 bit-flipped files rejected\n",
           cuts, flip_failed);

    /* progressive: decodes, and truncated progressive data fails */
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    unsigned char *pbuf = NULL;
    unsigned long psize = 0;
    jpeg_mem_dest(&ci, &pbuf, &psize);
    ci.image_width = 120, ci.image_height = 90, ci.input_components = 3, ci.in_color_space = JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 95, TRUE);
    jpeg_simple_progression(&ci);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = src.pix + (size_t)ci.next_scanline * 120 * 3;
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    dc_image prog = {0};
    REQUIRE(dc_jpeg_decode(pbuf, psize, "progressive.jpg", 0, 3, &prog) == DC_OK);
    EXPECT(psnr(prog.pix, src.pix, src.cap) > 30.0);
    dc_image_free(&prog);
    int pfail = 0, pcuts = 0;
    for (size_t cut = 1; cut < psize; cut += psize / 29 + 1)
        pcuts++, pfail += decode_fails_naming(pbuf, cut, "prog_cut.jpg");
    EXPECTF(pfail == pcuts, "%d of %d truncated progressive files failed", pfail, pcuts);
    free(pbuf);
    free(copy);
    free(jpg);
    dc_image_free(&src);
}

/* ---- 5. limits -------------------------------------------------------------------------------------------
 */

static void test_limits(void) {
    dc_image src;
    make_image(&src, 16, 16, 3, 0, 1);
    uint8_t *jpg;
    size_t len;
    REQUIRE(dc_jpeg_encode(&src, 90, &jpg, &len) == DC_OK);
    size_t sof = 0;
    for (size_t i = 0; i + 1 < len; i++)
        if (jpg[i] == 0xFF && jpg[i + 1] == 0xC0) {
            sof = i;
            break;
        }
    REQUIRE(sof > 0);
    const int dims[2][2] = {{40000, 40000}, {20000, 20000}}; /* over the side limit; over the pixel limit */
    for (int k = 0; k < 2; k++) {
        /* SOF0: FF C0, length (2), precision (1), height (2), width (2) */
        jpg[sof + 5] = (uint8_t)(dims[k][1] >> 8), jpg[sof + 6] = (uint8_t)(dims[k][1] & 255);
        jpg[sof + 7] = (uint8_t)(dims[k][0] >> 8), jpg[sof + 8] = (uint8_t)(dims[k][0] & 255);
        dc_image img = {0};
        EXPECT(dc_jpeg_decode(jpg, len, "huge.jpg", 0, 3, &img) == DC_FAIL);
        EXPECT(has("huge.jpg") && has("decoder limit"));
        EXPECT(img.pix == NULL && img.cap == 0); /* nothing allocated */
        int w, h, c;
        EXPECT(dc_jpeg_info(jpg, len, "huge.jpg", &w, &h, &c) == DC_FAIL && has("decoder limit"));
    }
    free(jpg);
    dc_image_free(&src);
}

/* ---- 6. buffer reuse, info, encoder checks ------------------------------------------------------------- */

static void test_reuse(void) {
    dc_image big, small, img = {0};
    make_image(&big, 200, 150, 3, 0, 1);
    make_image(&small, 50, 40, 3, 0, 2);
    uint8_t *jb, *js;
    size_t lb, ls;
    REQUIRE(dc_jpeg_encode(&big, 90, &jb, &lb) == DC_OK && dc_jpeg_encode(&small, 90, &js, &ls) == DC_OK);
    REQUIRE(dc_jpeg_decode(jb, lb, "big.jpg", 0, 3, &img) == DC_OK);
    uint8_t *p = img.pix;
    size_t cap = img.cap;
    EXPECT(cap >= (size_t)200 * 150 * 3);
    REQUIRE(dc_jpeg_decode(js, ls, "small.jpg", 0, 3, &img) == DC_OK);
    EXPECT(img.pix == p && img.cap == cap && img.w == 50 && img.h == 40); /* reused */
    REQUIRE(dc_jpeg_decode(jb, lb, "big.jpg", 0, 3, &img) == DC_OK);
    EXPECT(img.pix == p); /* still big enough */
    dc_image tiny = {0};
    tiny.pix = malloc(10), tiny.cap = 10;
    REQUIRE(dc_jpeg_decode(js, ls, "small.jpg", 0, 1, &tiny) == DC_OK);
    EXPECT(tiny.cap >= (size_t)50 * 40 && tiny.c == 1); /* grown */
    int w, h, c;
    EXPECT(dc_jpeg_info(jb, lb, "big.jpg", &w, &h, &c) == DC_OK && w == 200 && h == 150 && c == 3);
    uint8_t *out;
    size_t n;
    EXPECT(dc_jpeg_encode(&big, 0, &out, &n) == DC_FAIL && has("quality"));
    free(jb), free(js);
    dc_image_free(&big), dc_image_free(&small), dc_image_free(&img), dc_image_free(&tiny);
}

/* ---- 7. decode + transform with partial decoding ------------------------------------------------------- */

/* A JPEG written with libjpeg: h x v luma sampling (2x2 = 4:2:0, 2x1 = 4:2:2, 1x1 = 4:4:4), progressive. */
static uint8_t *write_jpeg(const dc_image *img, int hs, int vs, int progressive, size_t *len) {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    unsigned char *buf = NULL;
    unsigned long size = 0;
    jpeg_mem_dest(&ci, &buf, &size);
    ci.image_width = (JDIMENSION)img->w, ci.image_height = (JDIMENSION)img->h;
    ci.input_components = img->c;
    ci.in_color_space = img->c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, 90, TRUE);
    if (img->c == 3) ci.comp_info[0].h_samp_factor = hs, ci.comp_info[0].v_samp_factor = vs;
    if (progressive) jpeg_simple_progression(&ci);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = img->pix + (size_t)ci.next_scanline * img->w * img->c;
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    *len = size;
    return buf;
}

static void test_decode_transform(void) {
    const struct {
        int w, h, c, hs, vs, prog;
        const char *name;
    } files[] = {{157, 113, 3, 2, 2, 0, "4:2:0"},       {157, 113, 3, 2, 1, 0, "4:2:2"},
                 {157, 113, 3, 1, 1, 0, "4:4:4"},       {157, 113, 1, 1, 1, 0, "grey"},
                 {157, 113, 3, 2, 2, 1, "progressive"}, {301, 227, 3, 2, 2, 0, "4:2:0 large"}};
    const int sizes[3] = {24, 40, 64}; /* min_side 24/40 on these files: 1/4 or 1/2 DCT scaling; 64: full */
    const dc_aug_type augs[3] = {DC_AUG_IMAGENET, DC_AUG_CIFAR, DC_AUG_NONE};
    int cases = 0, mismatches = 0, partial = 0;
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        dc_image src;
        make_image(&src, files[f].w, files[f].h, files[f].c, 2, 40 + f);
        for (size_t i = 0; i < src.cap; i++)
            src.pix[i] = (uint8_t)(src.pix[i] ^ (dc_rng_at(f, i) & 15)); /* + grain */
        size_t len;
        uint8_t *jpg = write_jpeg(&src, files[f].hs, files[f].vs, files[f].prog, &len);
        for (int a = 0; a < 3; a++)
            for (int si = 0; si < 3; si++) {
                dc_transform t;
                memset(&t, 0, sizeof t);
                t.train_aug = augs[a], t.out_size = sizes[si], t.out_channels = 3,
                t.resize_size = sizes[si] + 8;
                t.crop_padding = 4, t.hflip = 1, t.color_jitter = 0.4f;
                t.scale_min = 0.08f, t.scale_max = 1.0f, t.ratio_min = 0.75f, t.ratio_max = 4.0f / 3.0f;
                for (int ch = 0; ch < 3; ch++) t.mean[ch] = 0.5f, t.std[ch] = 0.25f;
                const size_t per = (size_t)3 * t.out_size * t.out_size;
                float *fused = malloc(per * sizeof(float)), *ref = malloc(per * sizeof(float));
                dc_image img = {0}, full = {0};
                void *scratch = NULL, *scratch2 = NULL;
                size_t cap = 0;
                for (int k = 0; k < 25; k++) {
                    int train = k % 5 != 4;
                    uint64_t key = dc_rng_key(7, DC_RNG_AUGMENT, (uint64_t)f, (uint64_t)k);
                    REQUIRE(dc_jpeg_decode_transform(jpg, len, "fused.jpg", &t, train, key, &img, &scratch,
                                                     &cap, fused) == DC_OK);
                    REQUIRE(dc_jpeg_decode(jpg, len, "ref.jpg", dc_transform_min_side(&t, train), 3, &full) ==
                            DC_OK);
                    scratch2 = realloc(scratch2, dc_transform_scratch_bytes(&t, &full));
                    REQUIRE(dc_transform_apply(&t, &full, train, key, ref, scratch2) == DC_OK);
                    cases++;
                    mismatches += memcmp(fused, ref, per * sizeof(float)) != 0;
                    partial += img.w * img.h < full.w * full.h;
                }
                free(fused), free(ref), free(scratch), free(scratch2);
                dc_image_free(&img), dc_image_free(&full);
            }
        free(jpg);
        dc_image_free(&src);
    }
    EXPECTF(mismatches == 0, "%d of %d fused decode+transform outputs differ from decode, then transform",
            mismatches, cases);
    EXPECTF(partial > cases / 5, "only %d of %d fused calls decoded a partial region", partial, cases);
    printf("decode+transform: %d cases bit-identical to decode then transform, %d used a partial decode\n",
           cases, partial);

    /* corruption outside the decoded region is still reported: small crops (scale <= 0.1), files cut at 19
     * points, 4 keys each */
    dc_image src;
    make_image(&src, 157, 113, 3, 2, 3);
    uint8_t *jpg;
    size_t len;
    REQUIRE(dc_jpeg_encode(&src, 90, &jpg, &len) == DC_OK);
    dc_transform t;
    memset(&t, 0, sizeof t);
    t.train_aug = DC_AUG_IMAGENET, t.out_size = 64, t.out_channels = 3;
    t.scale_min = 0.08f, t.scale_max = 0.1f, t.ratio_min = 0.75f, t.ratio_max = 4.0f / 3.0f;
    for (int ch = 0; ch < 3; ch++) t.mean[ch] = 0.5f, t.std[ch] = 0.25f;
    float out[3 * 64 * 64];
    dc_image img = {0};
    void *scratch = NULL;
    size_t cap = 0;
    int failed = 0, tries = 0;
    for (int cut = 1; cut < 20; cut++)
        for (int k = 0; k < 4; k++, tries++) {
            dc_clear_error();
            failed += dc_jpeg_decode_transform(jpg, len * cut / 20, "cut_fused.jpg", &t, 1, (uint64_t)k, &img,
                                               &scratch, &cap, out) == DC_FAIL &&
                      has("cut_fused.jpg");
        }
    EXPECTF(failed == tries, "%d of %d truncated files failed in the fused path", failed, tries);
    free(scratch), free(jpg);
    dc_image_free(&img), dc_image_free(&src);
}

int main(void) {
    test_decode_transform();
    test_roundtrip();
    test_cmyk();
    test_dct_scaling();
    test_corrupt();
    test_limits();
    test_reuse();
    return tu_finish("test_jpeg");
}
