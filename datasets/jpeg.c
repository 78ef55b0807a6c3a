/*
 * jpeg.c: JPEG decoding (and encoding, for tests) from memory with libjpeg-turbo.
 *
 * Why this shape:
 *  - libjpeg reports fatal errors by calling error_exit, whose default prints and calls exit(). A data loader
 *    must survive a corrupt file, so error_exit formats the message and longjmps back to dc_jpeg_decode,
 *    which destroys the decompressor and returns DC_FAIL naming the file.
 *  - libjpeg *continues* after "warnings" such as "Premature end of JPEG file" (it pads the missing data with
 *    grey) or "Corrupt JPEG data: bad Huffman code". A truncated download would then silently train on a
 *    half-grey image, so emit_message turns every warning into the same error path. Two warnings describe
 *    metadata only and leave the pixels intact (an unknown JFIF revision number, a malformed ICC profile,
 *    which we never read); they are ignored.
 *  - DCT-domain scaling: a JPEG stores 8x8 blocks of DCT coefficients, and libjpeg-turbo can run a reduced
 *    M x M inverse DCT (M = 1..8) to produce the image at scale M/8 directly. This skips IDCT, upsampling
 *    and colour-conversion work (the Huffman decoding, about half the time, remains): a 1/2-scale decode
 *    costs about 75% of a full one, and the resampling that follows reads 4x fewer pixels. We pick the
 *    smallest M in {1, 2, 4, 8} whose output's shorter side is still >= min_side; the other M run generic C
 *    code and are slower than a full decode in libjpeg-turbo 2.1 (docs/IMAGES.md has the numbers).
 *  - Partial decoding (dc_jpeg_decode_region): only the rows and columns a caller needs go through the
 *    IDCT, upsampling and colour conversion (jpeg_crop_scanline, jpeg_skip_scanlines), with a margin that
 *    makes them bit-identical to the full decode; everything is still entropy-decoded, so corruption anywhere
 *    is still an error.
 *  - The defaults match PIL's decoder (accurate integer IDCT, "fancy" triangular chroma upsampling), so at
 *    full scale the pixels are identical to what torchvision's PIL loader sees.
 *  - CMYK and YCCK (Photoshop) files: libjpeg converts YCCK to CMYK; we convert CMYK to RGB. Files with an
 *    Adobe APP14 marker store the channels inverted (Photoshop's convention; PIL assumes it for all
 *    files), so the stored values are c' = 255 - C, k' = 255 - K and R = 255 (1 - C)(1 - K) = c' k' / 255;
 *    we evaluate it as PIL's cmyk2rgb does (R = k' - round((255 - c') k' / 255)): the same bytes.
 *  - Size limits are checked from the header before anything is allocated.
 */
#include "datasets/image.h"

#include "core/check.h"

#include <setjmp.h>
#include <stdio.h> /* jpeglib.h needs FILE */
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

typedef struct {
    struct jpeg_error_mgr pub; /* must be first: libjpeg hands us a pointer to it */
    jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
} dc_jpeg_error_mgr;

static void dc_jpeg_error_exit(j_common_ptr cinfo) {
    dc_jpeg_error_mgr *err = (dc_jpeg_error_mgr *)cinfo->err;
    err->pub.format_message(cinfo, err->message);
    longjmp(err->jump, 1);
}

/* msg_level < 0 is a warning (corrupt data that libjpeg would paper over); >= 0 are trace messages. */
static void dc_jpeg_emit_message(j_common_ptr cinfo, int msg_level) {
    dc_jpeg_error_mgr *err = (dc_jpeg_error_mgr *)cinfo->err;
    if (msg_level >= 0) return;
    int code = err->pub.msg_code;
    if (code == JWRN_JFIF_MAJOR || code == JWRN_BOGUS_ICC) return; /* metadata only, pixels unaffected */
    err->pub.format_message(cinfo, err->message);
    longjmp(err->jump, 1);
}

static void dc_jpeg_error_init(dc_jpeg_error_mgr *err) {
    jpeg_std_error(&err->pub);
    err->pub.error_exit = dc_jpeg_error_exit;
    err->pub.emit_message = dc_jpeg_emit_message;
    err->message[0] = '\0';
}

void dc_image_free(dc_image *img) {
    if (!img) return;
    free(img->pix);
    memset(img, 0, sizeof *img);
}

/* Makes sure img->pix holds `need` bytes, reallocating only when the buffer is too small. */
static int dc_image_reserve(dc_image *img, size_t need, const char *what) {
    if (img->pix && img->cap >= need) return DC_OK;
    free(img->pix);
    img->pix = NULL;
    img->cap = 0;
    img->pix = (uint8_t *)malloc(need ? need : 1);
    if (!img->pix) return DC_ERR("%s: out of memory allocating %zu bytes for the decoded image", what, need);
    img->cap = need;
    return DC_OK;
}

/* PIL's rounded a*b/255 for bytes (exact for all a, b in 0..255). */
static inline int dc_muldiv255(int a, int b) {
    int t = a * b + 128;
    return ((t >> 8) + t) >> 8;
}

/* One row of CMYK (4 bytes per pixel) to RGB or grey. inverted: Adobe polarity (stored c' = 255 - C). */
static void dc_cmyk_row_to_rgb(const uint8_t *cmyk, int w, int inverted, int out_c, uint8_t *out) {
    for (int x = 0; x < w; x++, cmyk += 4) {
        int c = cmyk[0], m = cmyk[1], y = cmyk[2], k = cmyk[3];
        if (inverted) c = 255 - c, m = 255 - m, y = 255 - y, k = 255 - k; /* now true ink amounts */
        int nk = 255 - k;
        int r = nk - dc_muldiv255(c, nk), g = nk - dc_muldiv255(m, nk), b = nk - dc_muldiv255(y, nk);
        if (out_c == 3) {
            out[3 * x + 0] = (uint8_t)r, out[3 * x + 1] = (uint8_t)g, out[3 * x + 2] = (uint8_t)b;
        } else { /* ITU-R 601 luma in PIL's 16-bit fixed point (the same as convert("L")) */
            out[x] = (uint8_t)((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
        }
    }
}

static const char *dc_what(const char *what) {
    return what && what[0] ? what : "<memory>";
}

/* Reads the header, checks the limits. Call inside the setjmp scope. */
static int dc_jpeg_read_header_checked(struct jpeg_decompress_struct *cinfo, const char *what) {
    if (jpeg_read_header(cinfo, TRUE) != JPEG_HEADER_OK)
        return DC_ERR("%s: not a decodable JPEG (no image found in the header)", what);
    unsigned w = cinfo->image_width, h = cinfo->image_height;
    if (w > DC_JPEG_MAX_SIDE || h > DC_JPEG_MAX_SIDE || (long long)w * h > DC_JPEG_MAX_PIXELS)
        return DC_ERR("%s: image is %u x %u pixels, above the decoder limit (%d per side, %lld pixels); "
                      "refusing to decode it",
                      what, w, h, DC_JPEG_MAX_SIDE, DC_JPEG_MAX_PIXELS);
    return DC_OK;
}

static int dc_jpeg_info_impl(const uint8_t *data, size_t len, const char *what, int *w, int *h, int *c) {
    if (!data || len == 0) return DC_ERR("%s: empty file (0 bytes), not a JPEG", what);
    struct jpeg_decompress_struct cinfo;
    dc_jpeg_error_mgr err;
    dc_jpeg_error_init(&err);
    cinfo.err = &err.pub;
    if (setjmp(err.jump)) {
        jpeg_destroy_decompress(&cinfo);
        return DC_ERR("%s: invalid JPEG: %s", what, err.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)len);
    if (dc_jpeg_read_header_checked(&cinfo, what) != DC_OK) {
        jpeg_destroy_decompress(&cinfo);
        return DC_FAIL;
    }
    *w = (int)cinfo.image_width;
    *h = (int)cinfo.image_height;
    *c = cinfo.num_components;
    jpeg_destroy_decompress(&cinfo);
    return DC_OK;
}

/* Margin (output pixels) decoded around a requested region: libjpeg-turbo's "fancy" chroma upsampling reads
 * the neighbouring chroma samples, which a cropped or skipped decode replaces by its edge, so the outermost
 * rows/columns of a partial decode can differ from the full decode. With this margin (and skipping only to a
 * 16-row boundary above it), the requested region is bit-identical to the full decode: checked on 4:2:0,
 * 4:2:2, 4:4:4, grey and progressive files at every scale by tests/test_transforms.c. */
#define DC_JPEG_REGION_MARGIN 16

/* `what` is never NULL here and never assigned: it is read after longjmp. */
static int dc_jpeg_decode_impl(const uint8_t *data, size_t len, const char *what, int min_side,
                               int out_channels, dc_jpeg_region_fn choose, void *ctx, dc_image *img,
                               int *off_x, int *off_y) {
    if (!img) return DC_ERR("%s: dc_jpeg_decode: img is NULL", what);
    if (out_channels != 1 && out_channels != 3)
        return DC_ERR("%s: dc_jpeg_decode: out_channels must be 1 or 3, got %d", what, out_channels);
    if (!data || len == 0) return DC_ERR("%s: empty file (0 bytes), not a JPEG", what);

    struct jpeg_decompress_struct cinfo;
    dc_jpeg_error_mgr err;
    dc_jpeg_error_init(&err);
    cinfo.err = &err.pub;
    if (setjmp(err.jump)) {
        /* Reached from libjpeg's error_exit or a warning: everything libjpeg allocated goes with destroy. */
        jpeg_destroy_decompress(&cinfo);
        return DC_ERR("%s: corrupt or unsupported JPEG: %s", what, err.message);
    }
    jpeg_create_decompress(&cinfo);
    jpeg_mem_src(&cinfo, data, (unsigned long)len);
    if (dc_jpeg_read_header_checked(&cinfo, what) != DC_OK) {
        jpeg_destroy_decompress(&cinfo);
        return DC_FAIL;
    }

    /* Colour handling: libjpeg converts YCbCr/RGB/grey to what we ask; CMYK we convert ourselves. */
    int cmyk = 0;
    switch (cinfo.jpeg_color_space) {
    case JCS_GRAYSCALE:
    case JCS_YCbCr:
    case JCS_RGB:
        cinfo.out_color_space = out_channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
        break;
    case JCS_CMYK:
    case JCS_YCCK:
        cinfo.out_color_space = JCS_CMYK;
        cmyk = 1;
        break;
    default:
        jpeg_destroy_decompress(&cinfo);
        return DC_ERR("%s: unsupported JPEG colour space (%d components, libjpeg colour space %d)", what,
                      cinfo.num_components, (int)cinfo.jpeg_color_space);
    }

    /* DCT scaling: the smallest M/8, M in {1, 2, 4, 8}, whose shorter output side still reaches min_side.
     * Only these four: libjpeg-turbo has SIMD inverse DCTs for them, while 3/8, 5/8, 6/8 and 7/8 run
     * generic C code (and, for 4:2:0 chroma, 2M x 2M IDCTs) that is measurably SLOWER than a full decode. */
    cinfo.scale_denom = 8;
    cinfo.scale_num = 8;
    if (min_side > 0) {
        for (unsigned m = 1; m <= 8; m *= 2) {
            cinfo.scale_num = m;
            jpeg_calc_output_dimensions(&cinfo);
            unsigned shorter =
                cinfo.output_width < cinfo.output_height ? cinfo.output_width : cinfo.output_height;
            if (shorter >= (unsigned)min_side) break;
        }
    }
    jpeg_calc_output_dimensions(&cinfo);
    const int full_w = (int)cinfo.output_width, full_h = (int)cinfo.output_height;

    /* The region the caller needs (all of it by default). A partial decode pays off only when it skips a
     * good part of the image; CMYK files (rare) are always decoded whole. */
    int x0 = 0, y0 = 0, x1 = full_w, y1 = full_h;
    if (choose) {
        if (choose(ctx, full_w, full_h, &x0, &y0, &x1, &y1) != DC_OK) {
            jpeg_destroy_decompress(&cinfo);
            return DC_FAIL;
        }
        x0 = x0 < 0 ? 0 : x0, y0 = y0 < 0 ? 0 : y0;
        x1 = x1 > full_w ? full_w : x1, y1 = y1 > full_h ? full_h : y1;
        if (x1 <= x0 || y1 <= y0 || cmyk || (double)(x1 - x0) * (y1 - y0) > 0.8 * (double)full_w * full_h)
            x0 = 0, y0 = 0, x1 = full_w, y1 = full_h;
    }
    jpeg_start_decompress(&cinfo);
    /* A progressive file has been read whole by now. If its scans leave coefficients unknown (a valid file
     * that stops after its first scans), libjpeg's block smoothing estimates them from the neighbouring
     * blocks, and a cropped or skipped decode has other neighbours at its edges: its pixels would differ
     * from the full decode's inside the requested region too. Such files are decoded whole. */
    if (cinfo.progressive_mode && cinfo.do_block_smoothing && cinfo.coef_bits) {
        int complete = 1;
        for (int c = 0; c < cinfo.num_components && complete; c++)
            for (int k = 0; k < DCTSIZE2 && complete; k++) complete = cinfo.coef_bits[c][k] == 0;
        if (!complete) x0 = 0, y0 = 0, x1 = full_w, y1 = full_h;
    }
    const int partial = x0 > 0 || y0 > 0 || x1 < full_w || y1 < full_h;

    /* Columns: libjpeg-turbo's horizontal crop (aligned down to an iMCU boundary, widened as needed). */
    JDIMENSION crop_x = 0, crop_w = (JDIMENSION)full_w;
    if (partial && (x0 > 0 || x1 < full_w)) {
        int xs = x0 - DC_JPEG_REGION_MARGIN < 0 ? 0 : x0 - DC_JPEG_REGION_MARGIN;
        int xe = x1 + DC_JPEG_REGION_MARGIN > full_w ? full_w : x1 + DC_JPEG_REGION_MARGIN;
        crop_x = (JDIMENSION)xs;
        crop_w = (JDIMENSION)(xe - xs);
        jpeg_crop_scanline(&cinfo, &crop_x, &crop_w);
    }
    const int w = (int)crop_w, h = y1 - y0;
    size_t row_bytes = (size_t)w * (size_t)out_channels;
    if (dc_image_reserve(img, row_bytes * (size_t)h, what) != DC_OK) {
        jpeg_destroy_decompress(&cinfo);
        return DC_FAIL;
    }
    img->w = w;
    img->h = h;
    img->c = out_channels;

    if (!cmyk) {
        /* Rows: skip (entropy decoding only) to a 16-row boundary at least a margin above y0, decode and
         * drop the rows up to y0, decode y0..y1 straight into the output. */
        if (partial && y0 > 0) {
            int ys = (y0 / 16) * 16 - DC_JPEG_REGION_MARGIN;
            if (ys > 0) jpeg_skip_scanlines(&cinfo, (JDIMENSION)ys);
            JSAMPARRAY junk =
                (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, (JDIMENSION)row_bytes, 1);
            while (cinfo.output_scanline < (JDIMENSION)y0) jpeg_read_scanlines(&cinfo, junk, 1);
        }
        while (cinfo.output_scanline < (JDIMENSION)y1) {
            JSAMPROW rows[8];
            int n = 0;
            for (; n < 8 && cinfo.output_scanline + (unsigned)n < (JDIMENSION)y1; n++)
                rows[n] = img->pix + (size_t)(cinfo.output_scanline + (unsigned)n - (unsigned)y0) * row_bytes;
            jpeg_read_scanlines(&cinfo, rows, (JDIMENSION)n);
        }
        /* The rest is still entropy-decoded, so corruption anywhere in the file is reported, whatever the
         * region: whether a file is "bad" must not depend on a random crop. (Skipping *to* the last row would
         * not do: libjpeg-turbo then just declares the input finished; so the last row is decoded.) */
        if (cinfo.output_scanline < cinfo.output_height) {
            if (cinfo.output_height - cinfo.output_scanline > 1)
                jpeg_skip_scanlines(&cinfo, cinfo.output_height - cinfo.output_scanline - 1);
            JSAMPARRAY junk =
                (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, (JDIMENSION)row_bytes, 1);
            jpeg_read_scanlines(&cinfo, junk, 1);
        }
    } else {
        /* libjpeg's own pool row buffer (freed with the decompressor). */
        JSAMPARRAY buf = (*cinfo.mem->alloc_sarray)((j_common_ptr)&cinfo, JPOOL_IMAGE, (JDIMENSION)w * 4, 1);
        int inverted = cinfo.saw_Adobe_marker;
        while (cinfo.output_scanline < cinfo.output_height) {
            size_t y = cinfo.output_scanline;
            jpeg_read_scanlines(&cinfo, buf, 1);
            dc_cmyk_row_to_rgb(buf[0], w, inverted, out_channels, img->pix + y * row_bytes);
        }
    }
    /* finish_decompress reads up to EOI, so truncation after the last scan is caught too. */
    jpeg_finish_decompress(&cinfo);
    jpeg_destroy_decompress(&cinfo);
    if (off_x) *off_x = (int)crop_x;
    if (off_y) *off_y = y0;
    return DC_OK;
}

int dc_jpeg_decode_region(const uint8_t *data, size_t len, const char *what, int min_side, int out_channels,
                          dc_jpeg_region_fn choose, void *ctx, dc_image *img, int *off_x, int *off_y) {
    return dc_jpeg_decode_impl(data, len, dc_what(what), min_side, out_channels, choose, ctx, img, off_x,
                               off_y);
}

int dc_jpeg_info(const uint8_t *data, size_t len, const char *what, int *w, int *h, int *c) {
    return dc_jpeg_info_impl(data, len, dc_what(what), w, h, c);
}

int dc_jpeg_decode(const uint8_t *data, size_t len, const char *what, int min_side, int out_channels,
                   dc_image *img) {
    return dc_jpeg_decode_impl(data, len, dc_what(what), min_side, out_channels, NULL, NULL, img, NULL, NULL);
}

int dc_jpeg_encode(const dc_image *img, int quality, uint8_t **out, size_t *out_len) {
    if (!img || !img->pix || img->w <= 0 || img->h <= 0 || (img->c != 1 && img->c != 3))
        return DC_ERR("dc_jpeg_encode: need a 1- or 3-channel image with positive size");
    if (quality < 1 || quality > 100)
        return DC_ERR("dc_jpeg_encode: quality must be 1..100, got %d", quality);
    if (!out || !out_len) return DC_ERR("dc_jpeg_encode: out and out_len must not be NULL");

    struct jpeg_compress_struct cinfo;
    dc_jpeg_error_mgr err;
    dc_jpeg_error_init(&err);
    cinfo.err = &err.pub;
    if (setjmp(err.jump)) {
        /* Unreachable with the checks above; libjpeg's growing memory destination may leak its buffer. */
        jpeg_destroy_compress(&cinfo);
        return DC_ERR("dc_jpeg_encode: %s", err.message);
    }
    jpeg_create_compress(&cinfo);
    unsigned char *dest = NULL;
    unsigned long size = 0;
    jpeg_mem_dest(&cinfo, &dest, &size);
    cinfo.image_width = (JDIMENSION)img->w;
    cinfo.image_height = (JDIMENSION)img->h;
    cinfo.input_components = img->c;
    cinfo.in_color_space = img->c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&cinfo);
    jpeg_set_quality(&cinfo, quality, TRUE);
    jpeg_start_compress(&cinfo, TRUE);
    size_t row_bytes = (size_t)img->w * (size_t)img->c;
    while (cinfo.next_scanline < cinfo.image_height) {
        JSAMPROW row = img->pix + (size_t)cinfo.next_scanline * row_bytes;
        jpeg_write_scanlines(&cinfo, &row, 1);
    }
    jpeg_finish_compress(&cinfo);
    jpeg_destroy_compress(&cinfo);
    *out = dest;
    *out_len = (size_t)size;
    return DC_OK;
}
