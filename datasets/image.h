/*
 * image.h: decoded images and the per-sample transforms (the "image pipeline").
 *
 *   bytes on disk --dc_jpeg_decode--> dc_image (uint8, HWC) --dc_transform_apply--> float CHW, normalised
 *
 * The transforms reproduce torchvision 0.14 operating on PIL images (what the reference implementation runs):
 * the bilinear resampling is PIL's (antialiased when shrinking, 22-bit fixed point, uint8 between the
 * horizontal and the vertical pass), ColorJitter is PIL's ImageEnhance (blends truncated to uint8), and
 * ToTensor + Normalize are evaluated in float32 as torch does. Given the same crop parameters and the same
 * decoded pixels, the output is bit-identical to torchvision's (tests/test_transforms.c checks this against
 * golden files). What differs by design: the random numbers (dc_rng, not torch's generator) and, when
 * DCT-domain scaling is used, the decoded pixels. docs/IMAGES.md has the details and measured differences.
 *
 * Randomness: a training transform draws every random number from dc_rng keyed by
 * dc_rng_key(seed, DC_RNG_AUGMENT, epoch, global_sample_index), so an image's augmentation is the same on any
 * number of ranks and threads.
 */
#ifndef DC_IMAGE_H
#define DC_IMAGE_H

#include "core/config.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int w, h, c;  /* c = 1 (grey) or 3 (RGB) */
    uint8_t *pix; /* HWC, row-major; NULL or from malloc (dc_jpeg_decode may free and reallocate it) */
    size_t cap;   /* bytes allocated in pix (so a buffer can be reused without reallocating) */
} dc_image;

/* Frees img->pix and zeroes the struct. */
void dc_image_free(dc_image *img);

/* Decoder limits: larger images are refused with a message instead of being allocated. */
#define DC_JPEG_MAX_SIDE   32768
#define DC_JPEG_MAX_PIXELS 200000000LL

/* Decodes a JPEG held in memory. `what` names the source in messages (the file path). min_side: when > 0,
 * libjpeg-turbo's DCT-domain scaling (scale M/8, M = 1, 2, 4, 8: the SIMD-accelerated ones) picks the
 * smallest scale whose shorter side is still >= min_side, so e.g. an 800 x 600 photo for a 224 crop decodes
 * at 400 x 300, faster. Greyscale stays 1 channel when out_channels == 1, else is replicated to RGB;
 * CMYK/YCCK are converted to RGB (Adobe files, i.e. with an APP14 marker, store inverted CMYK as Photoshop
 * writes it); out_channels == 1 converts colour to luma. img->pix is (re)allocated only if img->cap is too
 * small. Corrupt or non-JPEG data: DC_FAIL with a message naming `what` (libjpeg errors are caught with its
 * error manager and setjmp, never exit). libjpeg warnings (e.g. premature end of data) are treated as errors.
 */
int dc_jpeg_decode(const uint8_t *data, size_t len, const char *what, int min_side, int out_channels,
                   dc_image *img);

/* Partial decoding. choose(ctx, w, h, &x0, &y0, &x1, &y1) is called once the decoded size w x h (after DCT
 * scaling) is known and names the region [x0, x1) x [y0, y1) the caller needs. Only that part (plus a margin)
 * goes through the inverse DCT, upsampling and colour conversion; the rest is only entropy-decoded (so errors
 * anywhere in the file are still reported). img then holds a region of the decoded image that contains the
 * requested one, whose pixel (0, 0) is pixel (*off_x, *off_y) of the full decode; its pixels are identical to
 * the full decode's. A region covering most of the image, or a CMYK file, is decoded whole (offsets 0). */
typedef int (*dc_jpeg_region_fn)(void *ctx, int w, int h, int *x0, int *y0, int *x1, int *y1);
int dc_jpeg_decode_region(const uint8_t *data, size_t len, const char *what, int min_side, int out_channels,
                          dc_jpeg_region_fn choose, void *ctx, dc_image *img, int *off_x, int *off_y);

/* Reads only the header: the stored size and channel count (1, 3 or 4 for CMYK/YCCK). */
int dc_jpeg_info(const uint8_t *data, size_t len, const char *what, int *w, int *h, int *c);

/* Encodes a JPEG (for tests and synthetic fixtures). quality 1..100, 4:2:0 chroma for colour images.
 * *out is malloc'd (free with free()). */
int dc_jpeg_encode(const dc_image *img, int quality, uint8_t **out, size_t *out_len);

/* What a transform does; built from the config with dc_transform_from_config. */
typedef struct {
    dc_aug_type train_aug; /* augmentation for training samples */
    int out_size;          /* output is out_size x out_size */
    int out_channels;
    int resize_size;  /* eval (imagenet): Resize(resize_size) + CenterCrop(out_size); 0: CenterCrop only */
    int crop_padding; /* cifar: zero padding for the random crop */
    int hflip;
    float color_jitter; /* brightness = contrast = saturation = this; 0 disables */
    float scale_min, scale_max, ratio_min, ratio_max; /* RandomResizedCrop: 0.08, 1, 3/4, 4/3 */
    float mean[DC_MAX_CHANNELS], std[DC_MAX_CHANNELS];
    /* Distance in floats between output channel planes; 0 means out_size * out_size (plain CHW). Set it to
     * N * out_size * out_size to write sample n of a CNHW batch directly at out = batch + n * out_size^2. */
    int64_t out_channel_stride;
} dc_transform;

void dc_transform_from_config(const dc_training_opt *opt, dc_transform *t);

/* The smallest shorter side the decoder must deliver for this transform (the DCT-scaling hint):
 * imagenet train: out_size; imagenet eval: resize_size (0 when resize_size is 0: a CenterCrop without Resize
 * must see the stored scale); none: out_size; cifar: 0 (decode at full size). */
int dc_transform_min_side(const dc_transform *t, int train);

/* Colour-jitter operations (torchvision's ColorJitter with hue = 0). */
enum { DC_JITTER_BRIGHTNESS = 0, DC_JITTER_CONTRAST = 1, DC_JITTER_SATURATION = 2 };

/* Everything random (and size-dependent) about one sample's transform, in the order it is applied:
 *   1. take the region box_* of the input (pixels outside the image are 0: CIFAR zero padding),
 *   2. resample it to resize_w x resize_h with PIL's bilinear filter (a copy when the sizes match),
 *   3. take the out_size x out_size window at (win_x, win_y) of that (0 outside: CenterCrop padding),
 *   4. mirror left-right if flip,
 *   5. apply jitter_n colour operations jitter_op[k] with factors jitter_factor[k], k = 0..jitter_n-1,
 *   6. ToTensor + Normalize (and convert 1 <-> 3 channels if in->c != out_channels). */
typedef struct {
    int box_x, box_y, box_w, box_h;
    int resize_w, resize_h;
    int win_x, win_y;
    int flip;
    int jitter_n;
    int jitter_op[3];
    float jitter_factor[3];
} dc_transform_params;

/* Draws the parameters for an in_w x in_h input. train == 0 gives the deterministic evaluation parameters
 * (key unused). Random streams (all from `key`): the crop, the flip and the jitter use disjoint counter
 * ranges, so e.g. the flip does not depend on how many RandomResizedCrop attempts were rejected. */
int dc_transform_draw(const dc_transform *t, int in_w, int in_h, int train, uint64_t key,
                      dc_transform_params *p);

/* Applies given parameters: writes out[out_channels][out_size][out_size] (channel planes
 * out_channel_stride apart). Fails (without writing) on invalid input or parameters. */
int dc_transform_apply_params(const dc_transform *t, const dc_image *in, const dc_transform_params *p,
                              float *out, void *scratch);

/* Applies the transform to one image and writes out[out_channels, out_size, out_size] (CHW, normalised).
 *   train != 0: the training augmentation (cifar: pad + random crop + flip; imagenet: RandomResizedCrop with
 *               bilinear resampling + flip + ColorJitter; none: resize only, no randomness), keyed by `key`.
 *   train == 0: evaluation (imagenet: Resize(resize_size) + CenterCrop; others: resize to out_size if
 *               needed).
 * `scratch` must hold dc_transform_scratch_bytes(t, in) bytes (no allocation happens here). The size grows
 * monotonically with in->w, in->h and in->c, so scratch sized for the largest image serves all images.
 * Returns DC_OK, or DC_FAIL for an invalid image or transform (message says which). */
size_t dc_transform_scratch_bytes(const dc_transform *t, const dc_image *in);
int dc_transform_apply(const dc_transform *t, const dc_image *in, int train, uint64_t key, float *out,
                       void *scratch);

/* Decode + transform in one call, the fast path for JPEG datasets: with the imagenet training augmentation
 * only the RandomResizedCrop box is decoded (dc_jpeg_decode_region): 10-15% faster per image on
 * ImageNet-like photos (the whole file is still entropy-decoded). The output is bit-identical to
 *     dc_jpeg_decode(data, len, what, dc_transform_min_side(t, train), t->out_channels, img);
 *     dc_transform_apply(t, img, train, key, out, scratch);
 * img and *scratch are grown (realloc) when too small, like img->pix in dc_jpeg_decode; *scratch must be NULL
 * or from malloc, *scratch_cap its size. */
int dc_jpeg_decode_transform(const uint8_t *data, size_t len, const char *what, const dc_transform *t,
                             int train, uint64_t key, dc_image *img, void **scratch, size_t *scratch_cap,
                             float *out);

/* PIL's bilinear resize (Image.resize(..., BILINEAR) of an 8-bit image), bit-exact: the c-channel image
 * src (w x h, row stride src_stride bytes) is resized to out_w x out_h, and only the window
 * [win_x, win_x + win_w) x [win_y, win_y + win_h) of the result (which must lie inside it) is computed and
 * written to dst (HWC, row stride dst_stride bytes). scratch: dc_resize_scratch_bytes(...) bytes. */
size_t dc_resize_scratch_bytes(int w, int h, int c, int out_w, int out_h, int win_w, int win_h);
int dc_resize_bilinear_u8(const uint8_t *src, int w, int h, int c, size_t src_stride, int out_w, int out_h,
                          int win_x, int win_y, int win_w, int win_h, uint8_t *dst, size_t dst_stride,
                          void *scratch);

/* One PIL ImageEnhance operation (Brightness, Contrast or Color) on a PLANAR uint8 image (c planes of w*h
 * bytes, CHW), in place, bit-exact with PIL. */
void dc_color_jitter_u8(uint8_t *pix, int w, int h, int c, int op, float factor);

#endif /* DC_IMAGE_H */
