/*
 * fuzz_jpeg.c: libFuzzer target for the JPEG decode wrapper (datasets/jpeg.c) and the decode + transform
 * fast path (datasets/transforms.c).
 *
 * Input: 4 control bytes, then the JPEG file.
 *   byte 0  bit 0: out_channels 1 (else 3); bit 1: evaluate (train = 0) instead of train; bit 2: colour
 * jitter byte 1  min_side hint for dc_jpeg_decode (0..255) byte 2  the requested region for
 * dc_jpeg_decode_region: x0 = w * (b2 >> 4) / 16, y0 = h * (b2 & 15) / 16 byte 3  its size: x1 = x0 + 1 + (w
 * - x0 - 1) * (b3 >> 4) / 15, y1 likewise with the low nibble Images above 4 Mpixel (per dc_jpeg_info) are
 * skipped: decoding them is legal and only slow, which would stall the fuzzer; the size limits themselves are
 * checked before allocation by the header path, which runs.
 *
 * Properties (all documented in datasets/image.h):
 *   - dc_jpeg_decode either fails with a message naming the file or returns a w x h x out_channels image;
 *   - dc_jpeg_decode_region succeeds exactly when dc_jpeg_decode does ("whether a file is bad must not
 *     depend on a random crop"), contains the requested region, and the requested region's pixels equal the
 *     full decode's (the margin around it may differ at the crop edges, see datasets/jpeg.c);
 *   - dc_jpeg_decode_transform gives bit-identically the output of dc_jpeg_decode + dc_transform_apply.
 */
#include "core/check.h"
#include "core/config.h"
#include "datasets/image.h"
#include "tests/fuzz/fuzz_common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WHAT       "fuzz.jpg"
#define MAX_PIXELS (1LL << 22)
#define OUT_SIZE   24

typedef struct {
    uint8_t b2, b3;
    int x0, y0, x1, y1; /* what was asked */
    int called;
} region_req;

static int choose(void *ctx, int w, int h, int *x0, int *y0, int *x1, int *y1) {
    region_req *r = ctx;
    r->called = 1;
    r->x0 = (int)((long long)w * (r->b2 >> 4) / 16);
    r->y0 = (int)((long long)h * (r->b2 & 15) / 16);
    r->x1 = r->x0 + 1 + (int)((long long)(w - r->x0 - 1) * (r->b3 >> 4) / 15);
    r->y1 = r->y0 + 1 + (int)((long long)(h - r->y0 - 1) * (r->b3 & 15) / 15);
    *x0 = r->x0, *y0 = r->y0, *x1 = r->x1, *y1 = r->y1;
    return DC_OK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_bytes in = {data, size};
    const uint8_t b0 = fuzz_u8(&in), min_side = fuzz_u8(&in);
    region_req req = {fuzz_u8(&in), fuzz_u8(&in), 0, 0, 0, 0, 0};
    const int out_c = (b0 & 1) ? 1 : 3;
    const int train = !(b0 & 2);

    int W = 0, H = 0, C = 0;
    if (dc_jpeg_info(in.p, in.n, WHAT, &W, &H, &C) != DC_OK) {
        FUZZ_ASSERT(strncmp(dc_last_error(), WHAT, strlen(WHAT)) == 0);
    } else {
        FUZZ_ASSERT(W >= 1 && H >= 1 && C >= 1 && C <= 4);
        if ((long long)W * H > MAX_PIXELS) return 0;
    }

    /* 1. the full decode */
    dc_image full = {0};
    const int ok_full = dc_jpeg_decode(in.p, in.n, WHAT, min_side, out_c, &full) == DC_OK;
    if (ok_full) {
        FUZZ_ASSERT(full.w >= 1 && full.h >= 1 && full.c == out_c && full.w <= W && full.h <= H);
        FUZZ_ASSERT(full.cap >= (size_t)full.w * full.h * full.c);
    } else {
        FUZZ_ASSERT(strncmp(dc_last_error(), WHAT, strlen(WHAT)) == 0);
    }

    /* 2. a region of it */
    dc_image part = {0};
    int off_x = -1, off_y = -1;
    const int ok_part = dc_jpeg_decode_region(in.p, in.n, WHAT, min_side, out_c, choose, &req, &part, &off_x,
                                              &off_y) == DC_OK;
    if (ok_part != ok_full) {
        fprintf(stderr, "full decode %s, region decode %s: %s\n", ok_full ? "succeeded" : "failed",
                ok_part ? "succeeded" : "failed", dc_last_error());
        abort();
    }
    if (ok_full && ok_part) {
        FUZZ_ASSERT(req.called);
        FUZZ_ASSERT(part.c == out_c && off_x >= 0 && off_y >= 0);
        FUZZ_ASSERT(off_x + part.w <= full.w && off_y + part.h <= full.h);
        FUZZ_ASSERT(off_x <= req.x0 && off_y <= req.y0 && off_x + part.w >= req.x1 &&
                    off_y + part.h >= req.y1);
        /* the requested rectangle is bit-identical; the margin around it (fancy upsampling at the crop edge)
         * may differ, as datasets/jpeg.c documents */
        for (int y = req.y0; y < req.y1; y++) {
            const uint8_t *a = part.pix + ((size_t)(y - off_y) * part.w + (req.x0 - off_x)) * out_c;
            const uint8_t *b = full.pix + ((size_t)y * full.w + req.x0) * out_c;
            if (memcmp(a, b, (size_t)(req.x1 - req.x0) * out_c) != 0) {
                fprintf(
                    stderr,
                    "region decode differs from the full decode in row %d of [%d,%d)x[%d,%d) (decoded %dx%d "
                    "at %d,%d of %dx%d)\n",
                    y, req.x0, req.x1, req.y0, req.y1, part.w, part.h, off_x, off_y, full.w, full.h);
                abort();
            }
        }
    }
    dc_image_free(&part);
    dc_image_free(&full);

    /* 3. decode + transform in one call against the two-step path */
    dc_training_opt opt;
    {
        static dc_config cfg;
        dc_config_defaults(&cfg);
        opt = cfg.training_opt;
    }
    opt.augment = DC_AUG_IMAGENET;
    opt.image_size = OUT_SIZE;
    opt.resize_size = train ? 0 : OUT_SIZE + 8;
    opt.in_channels = out_c;
    opt.color_jitter = (b0 & 4) ? 0.4f : 0.0f;
    for (int c = 0; c < out_c; c++) opt.mean[c] = 0.5f, opt.std[c] = 0.25f;
    dc_transform t;
    dc_transform_from_config(&opt, &t);
    const uint64_t key = 0x9e3779b97f4a7c15ull ^ req.b2 ^ ((uint64_t)req.b3 << 8);
    float fast[3 * OUT_SIZE * OUT_SIZE], slow[3 * OUT_SIZE * OUT_SIZE];
    dc_image img = {0};
    void *scratch = NULL;
    size_t scratch_cap = 0;
    const int ok_fast = dc_jpeg_decode_transform(in.p, in.n, WHAT, &t, train, key, &img, &scratch,
                                                 &scratch_cap, fast) == DC_OK;
    dc_image whole = {0};
    int ok_slow = dc_jpeg_decode(in.p, in.n, WHAT, dc_transform_min_side(&t, train), out_c, &whole) == DC_OK;
    if (ok_slow) {
        void *s2 = malloc(dc_transform_scratch_bytes(&t, &whole));
        FUZZ_ASSERT(s2 != NULL);
        ok_slow = dc_transform_apply(&t, &whole, train, key, slow, s2) == DC_OK;
        free(s2);
    }
    if (ok_fast != ok_slow) {
        fprintf(stderr, "decode_transform %s, decode + transform %s: %s\n", ok_fast ? "succeeded" : "failed",
                ok_slow ? "succeeded" : "failed", dc_last_error());
        abort();
    }
    if (ok_fast) FUZZ_ASSERT(memcmp(fast, slow, sizeof(float) * (size_t)out_c * OUT_SIZE * OUT_SIZE) == 0);
    dc_image_free(&whole);
    dc_image_free(&img);
    free(scratch);
    return 0;
}
