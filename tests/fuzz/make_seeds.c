/*
 * make_seeds.c: writes the hand-made seed inputs of the fuzz targets, small valid and near-valid files in
 * the exact input layout each target expects (see the header comment of each fuzz_<parser>.c).
 *
 *   fuzz_make_seeds <corpus dir> <source dir>      -> <corpus dir>/<target>/seed_<what>
 *
 * Valid files are made with decouple's own writers (safetensors, npy, checkpoints, libjpeg through
 * dc_jpeg_encode and directly for progressive / arithmetic / CMYK / restart-marker variants), so a seed is
 * exactly what the readers meet in practice; near-valid ones are those with one thing wrong (a truncated
 * stream, a bad magic, an out-of-range label), which puts the fuzzer next to every error branch from the
 * start. The configs in configs/ and tests/fixtures/ are copied as config seeds.
 */
#include "core/check.h"
#include "core/npy.h"
#include "core/safetensors.h"
#include "datasets/image.h"
#include "dist/checkpoint.h"
#include "tests/fuzz/fuzz_ckpt_net.h"
#include "tests/fuzz/fuzz_common.h"

#include <jpeglib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *corpus;

/* A growable byte buffer. */
typedef struct {
    uint8_t *p;
    size_t n, cap;
} buf;

static void put(buf *b, const void *data, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 64;
        b->p = realloc(b->p, b->cap);
        if (!b->p) abort();
    }
    if (n) memcpy(b->p + b->n, data, n);
    b->n += n;
}
static void put_u8(buf *b, unsigned v) {
    uint8_t x = (uint8_t)v;
    put(b, &x, 1);
}
static void put_u16(buf *b, size_t v) {
    put_u8(b, (unsigned)(v >> 8) & 0xff);
    put_u8(b, (unsigned)v & 0xff);
}
static void put_be32(buf *b, uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) put_u8(b, (v >> s) & 0xff);
}
static void put_str(buf *b, const char *s) {
    put(b, s, strlen(s));
}

static void emit(const char *target, const char *name, const void *data, size_t n) {
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", corpus, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/seed_%s", corpus, target, name);
    fuzz_write_file(path, data, n);
}
static void emit_buf(const char *target, const char *name, buf *b) {
    emit(target, name, b->p, b->n);
    free(b->p);
    memset(b, 0, sizeof *b);
}

static uint8_t *slurp(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *p = malloc((size_t)len + 1);
    if (!p || fread(p, 1, (size_t)len, f) != (size_t)len) abort();
    fclose(f);
    *n = (size_t)len;
    return p;
}

/* ---- config ------------------------------------------------------------------------------------------- */

static void config_seeds(const char *src) {
    const char *files[] = {"configs/fashion_mnist.yaml", "tests/fixtures/config_native_cifar10_lt.yaml",
                           "tests/fixtures/config_reference_imagenet_lws.yaml",
                           "tests/fixtures/config_reference_inat_stage1.yaml"};
    const char *names[] = {"fashion_mnist", "native_cifar10_lt", "reference_imagenet_lws", "reference_inat"};
    for (int i = 0; i < 4; i++) {
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", src, files[i]);
        size_t n;
        uint8_t *p = slurp(path, &n);
        if (!p) {
            fprintf(stderr, "make_seeds: cannot read %s\n", path);
            exit(1);
        }
        emit("config", names[i], p, n);
        free(p);
    }
    static const struct {
        const char *name, *text;
    } yaml[] = {
        {"empty", ""},
        {"doc_marker", "---\n"},
        {"flow", "{training_opt: {batch_size: 64, num_epochs: 3, mean: [0.5, 0.5, 0.5], in_channels: 3}}\n"},
        {"sampler_progressive", "training_opt:\n  sampler: {type: progressive, pb_epochs: 4}\n"},
        {"multistep", "coslr: false\nscheduler:\n  type: multistep\n  milestones: [1, 2]\n  gamma: 0.5\n"
                      "training_opt: {num_epochs: 3}\n"},
        {"strings", "training_opt:\n  log_dir: \"runs/\\u00e9t\\u00e9 \\\"x\\\"\"\n  data_root: 'a''b'\n"},
        {"anchors", "a: &x {lr: 0.1}\nnetworks: {feat_model: {optim_params: *x}}\n"},
        {"unknown_key", "training_opt:\n  batch_szie: 64\n"},
        {"wrong_type", "training_opt:\n  batch_size: [1, 2]\n"},
        {"huge_value", "training_opt:\n  batch_size: 99999999999999999999999\n  imb_factor: 1e999\n"},
        {"non_utf8", "training_opt:\n  log_dir: \"\xff\xfe\"\n"},
        {"two_docs", "seed: 1\n---\nseed: 2\n"},
        {"stage2", "stage2:\n  crt: {num_epochs: 2}\n"},
    };
    for (size_t i = 0; i < sizeof yaml / sizeof yaml[0]; i++)
        emit("config", yaml[i].name, yaml[i].text, strlen(yaml[i].text));
    /* --set lines: a NUL byte, then one assignment per line */
    static const char sets[] = "\0training_opt.batch_size=256\nnetworks.feat_model.arch=resnet32\n"
                               "training_opt.mean=[0.1, 0.2, 0.3]\ntraining_opt.sampler.type=class_aware\n"
                               "training_opt.log_dir=\"x y\"\n";
    emit("config", "set_lines", sets, sizeof sets - 1);
}

/* ---- list files --------------------------------------------------------------------------------------- */

static void list_seeds(void) {
    static const struct {
        const char *name;
        uint8_t control;
        const char *text;
    } lists[] = {
        {"plain", 0, "train/n01/a.jpg 0\ntrain/n02/b.jpg 1\ntrain/n02/c.jpg 1\n"},
        {"num_classes", 3, "a.jpg 0\nb.jpg 2\n"},
        {"crlf_bom_blank", 0,
         "\xEF\xBB\xBF"
         "a b.jpg\t3\r\n\r\n  c.jpg   0  \r\n"},
        {"utf8_paths", 0, "\xc3\xa9t\xc3\xa9/\xe6\x97\xa5.jpg 1\n\xf0\x9f\x98\x80.jpg 0"},
        {"missing_label", 0, "a.jpg 0\nb.jpg\n"},
        {"bad_label", 10, "a.jpg -1\nb.jpg 10\nc.jpg 1x\n"},
        {"huge_label", 0, "a.jpg 99999999999999999999\n"},
        {"non_utf8", 0, "a\xff.jpg 0\n"},
        {"class_names", 0x80, "cat\ndog\r\n bird \n\n"},
        {"class_names_gap", 0x80, "cat\n\ndog\n"},
    };
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        buf b = {0};
        put_u8(&b, lists[i].control);
        put_str(&b, lists[i].text);
        emit_buf("list_file", lists[i].name, &b);
    }
    buf b = {0};
    put_u8(&b, 0);
    put_str(&b, "a.jpg 0\nbin");
    put_u8(&b, 0);
    put_str(&b, "ary 1\n");
    emit_buf("list_file", "nul_byte", &b);
}

/* ---- IDX ---------------------------------------------------------------------------------------------- */

static void idx_file(buf *b, uint32_t magic, uint32_t n, uint32_t rows, uint32_t cols, int labels) {
    put_be32(b, magic);
    put_be32(b, n);
    if (!labels) {
        put_be32(b, rows);
        put_be32(b, cols);
        for (uint32_t k = 0; k < n * rows * cols; k++) put_u8(b, (k * 37) & 0xff);
    } else {
        for (uint32_t k = 0; k < n; k++) put_u8(b, k % 10);
    }
}

/* flags, num_classes - 1, cut, images length, images, labels */
static void idx_seed(const char *name, uint8_t flags, uint8_t classes_m1, uint8_t cut, const buf *images,
                     const buf *labels) {
    buf b = {0};
    put_u8(&b, flags);
    put_u8(&b, classes_m1);
    put_u8(&b, cut);
    put_u16(&b, images->n);
    put(&b, images->p, images->n);
    put(&b, labels->p, labels->n);
    emit_buf("idx", name, &b);
}

static void idx_seeds(void) {
    buf img = {0}, lab = {0};
    idx_file(&img, 0x803, 3, 4, 5, 0);
    idx_file(&lab, 0x801, 3, 0, 0, 1);
    idx_seed("raw", 0, 9, 0, &img, &lab);
    idx_seed("gzip", 3, 9, 0, &img, &lab);
    idx_seed("gzip_truncated", 7, 9, 5, &img, &lab);
    idx_seed("swapped", 8, 9, 0, &img, &lab);
    idx_seed("label_out_of_range", 0, 1, 0, &img, &lab);
    buf short_img = {0};
    put(&short_img, img.p, img.n - 7);
    idx_seed("truncated_raw", 0, 9, 0, &short_img, &lab);
    buf other = {0};
    idx_file(&other, 0x801, 4, 0, 0, 1);
    idx_seed("count_mismatch", 0, 9, 0, &img, &other);
    /* a precompressed images file (so raw gzip bytes are in the corpus) */
    uint8_t *z = NULL;
    size_t zn = fuzz_gzip(img.p, img.n, &z);
    buf zimg = {0};
    put(&zimg, z, zn);
    idx_seed("pregzipped", 0, 9, 0, &zimg, &lab);
    free(z);
    free(img.p), free(lab.p), free(short_img.p), free(other.p), free(zimg.p);
}

/* ---- CIFAR -------------------------------------------------------------------------------------------- */

static void cifar_record(buf *b, int cifar100, int label) {
    if (cifar100) put_u8(b, (unsigned)label / 5);
    put_u8(b, (unsigned)label);
    for (int k = 0; k < 3072; k++) put_u8(b, (unsigned)(k * 7 + label) & 0xff);
}

static void cifar_seeds(void) {
    buf b = {0};
    put_u8(&b, 0), put_u8(&b, 0);
    cifar_record(&b, 0, 3);
    emit_buf("cifar", "cifar10_one", &b);

    put_u8(&b, 1 | 2), put_u8(&b, 0);
    cifar_record(&b, 1, 42);
    cifar_record(&b, 1, 99);
    emit_buf("cifar", "cifar100_gzip", &b);

    put_u8(&b, 8), put_u8(&b, 0);
    put_u16(&b, 3073);
    cifar_record(&b, 0, 1);
    cifar_record(&b, 0, 9);
    emit_buf("cifar", "cifar10_two_files", &b);

    put_u8(&b, 2 | 4), put_u8(&b, 9);
    cifar_record(&b, 0, 5);
    emit_buf("cifar", "gzip_truncated", &b);

    put_u8(&b, 0), put_u8(&b, 0);
    cifar_record(&b, 1, 50); /* a CIFAR-100 record read as CIFAR-10 */
    emit_buf("cifar", "wrong_kind", &b);
}

/* ---- JPEG --------------------------------------------------------------------------------------------- */

typedef struct {
    int w, h, c;
    int quality;
    int progressive, arith, restart, h_samp, cmyk, adobe;
} jpeg_spec;

static void jpeg_make(const jpeg_spec *s, buf *out) {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr jerr;
    ci.err = jpeg_std_error(&jerr);
    jpeg_create_compress(&ci);
    unsigned char *dest = NULL;
    unsigned long size = 0;
    jpeg_mem_dest(&ci, &dest, &size);
    ci.image_width = (JDIMENSION)s->w;
    ci.image_height = (JDIMENSION)s->h;
    ci.input_components = s->cmyk ? 4 : s->c;
    ci.in_color_space = s->cmyk ? JCS_CMYK : s->c == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, s->quality, TRUE);
    if (s->cmyk) jpeg_set_colorspace(&ci, JCS_CMYK);
    if (s->c == 3 && !s->cmyk) {
        ci.comp_info[0].h_samp_factor = s->h_samp;
        ci.comp_info[0].v_samp_factor = s->h_samp == 2 ? 2 : 1;
    }
    if (s->progressive) jpeg_simple_progression(&ci);
    ci.arith_code = s->arith ? TRUE : FALSE;
    ci.restart_in_rows = s->restart;
    ci.write_Adobe_marker = s->adobe ? TRUE : FALSE;
    jpeg_start_compress(&ci, TRUE);
    const int pc = ci.input_components;
    uint8_t *row = malloc((size_t)s->w * pc);
    while (ci.next_scanline < ci.image_height) {
        for (int x = 0; x < s->w; x++)
            for (int k = 0; k < pc; k++)
                row[x * pc + k] = (uint8_t)((x * 11 + (int)ci.next_scanline * 5 + k * 60) & 0xff);
        JSAMPROW r = row;
        jpeg_write_scanlines(&ci, &r, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    free(row);
    put(out, dest, size);
    free(dest);
}

static void jpeg_seed(const char *name, uint8_t b0, uint8_t min_side, uint8_t b2, uint8_t b3,
                      const uint8_t *jpg, size_t n) {
    buf b = {0};
    put_u8(&b, b0), put_u8(&b, min_side), put_u8(&b, b2), put_u8(&b, b3);
    put(&b, jpg, n);
    emit_buf("jpeg", name, &b);
}

static void jpeg_seeds(const char *src) {
    static const struct {
        const char *name;
        jpeg_spec s;
        uint8_t b0, min_side, b2, b3;
    } specs[] = {
        {"grey", {9, 7, 1, 90, 0, 0, 0, 1, 0, 0}, 1, 0, 0x00, 0xff},
        {"rgb420", {40, 33, 3, 75, 0, 0, 0, 2, 0, 0}, 0, 16, 0x44, 0x88},
        {"rgb444_eval", {24, 48, 3, 95, 0, 0, 0, 1, 0, 0}, 2, 0, 0x21, 0x33},
        {"progressive", {37, 21, 3, 80, 1, 0, 0, 2, 0, 0}, 4, 8, 0x80, 0x77},
        {"arithmetic", {16, 16, 3, 70, 0, 1, 0, 2, 0, 0}, 0, 0, 0x11, 0xff},
        {"restart", {64, 40, 3, 60, 0, 0, 1, 2, 0, 0}, 0, 20, 0x88, 0x44},
        {"cmyk_adobe", {12, 10, 3, 85, 0, 0, 0, 1, 1, 1}, 0, 0, 0x00, 0xff},
        {"cmyk_plain", {12, 10, 3, 85, 0, 0, 0, 1, 1, 0}, 1, 0, 0x00, 0xff},
        {"tall_region", {20, 140, 3, 75, 0, 0, 0, 2, 0, 0}, 0, 10, 0x0a, 0x03},
    };
    for (size_t i = 0; i < sizeof specs / sizeof specs[0]; i++) {
        buf j = {0};
        jpeg_make(&specs[i].s, &j);
        jpeg_seed(specs[i].name, specs[i].b0, specs[i].min_side, specs[i].b2, specs[i].b3, j.p, j.n);
        if (i == 1) { /* near-valid: truncated, and one flipped byte in the entropy-coded data */
            jpeg_seed("truncated", 0, 0, 0x00, 0xff, j.p, j.n * 2 / 3);
            j.p[j.n - 20] ^= 0x5a;
            jpeg_seed("corrupt_scan", 0, 0, 0x00, 0xff, j.p, j.n);
        }
        free(j.p);
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/jpeg_photo.jpg", src);
    size_t n;
    uint8_t *p = slurp(path, &n);
    if (p) {
        jpeg_seed("photo", 0, 24, 0x35, 0x9c, p, n);
        free(p);
    }
    static const uint8_t not_jpeg[] = "\xff\xd8\xff\xe0 this is not a JPEG";
    jpeg_seed("not_jpeg", 0, 0, 0, 0, not_jpeg, sizeof not_jpeg - 1);
}

/* ---- safetensors -------------------------------------------------------------------------------------- */

static void st_seed(const char *name, const dc_tensor *ts, int n, const char *const *mk,
                    const char *const *mv, int nm) {
    char path[1024];
    fuzz_path(path, sizeof path, "seed.safetensors");
    if (dc_safetensors_write(path, ts, n, mk, mv, nm) != DC_OK) {
        fprintf(stderr, "make_seeds: %s\n", dc_last_error());
        exit(1);
    }
    size_t len;
    uint8_t *p = slurp(path, &len);
    emit("safetensors", name, p, len);
    free(p);
}

static void st_seeds(const char *src) {
    fuzz_net fn;
    fuzz_net_init(&fn, 0);
    /* exactly what fuzz_safetensors' load step expects: fc.weight, fc.bias, bn1.num_batches_tracked */
    dc_tensor ts[3];
    ts[0] = fn.tensors[0];
    ts[1] = fn.tensors[1];
    ts[2] = fn.tensors[4];
    snprintf(ts[2].name, sizeof ts[2].name, "bn1.num_batches_tracked");
    const char *mk[] = {"format", "note"}, *mv[] = {"pt", "\"quoted\" \\ and \xc3\xa9\t"};
    st_seed("loadable", ts, 3, mk, mv, 2);
    st_seed("no_metadata", ts, 2, NULL, NULL, 0);
    st_seed("empty", NULL, 0, NULL, NULL, 0);
    dc_tensor u8 = {0};
    uint8_t bytes[5] = {1, 2, 3, 4, 5};
    snprintf(u8.name, sizeof u8.name, "weird \"name\"/\xe6\x97\xa5");
    u8.dtype = DC_U8, u8.ndim = 4, u8.shape[0] = 1, u8.shape[1] = 5, u8.shape[2] = 1, u8.shape[3] = 1;
    u8.data = bytes;
    dc_tensor_set_contiguous(&u8);
    dc_tensor i32 = {0};
    int32_t ints[2] = {-1, 7};
    snprintf(i32.name, sizeof i32.name, "ints");
    i32.dtype = DC_I32, i32.ndim = 1, i32.shape[0] = 2, i32.data = ints;
    dc_tensor_set_contiguous(&i32);
    dc_tensor zero = {0};
    snprintf(zero.name, sizeof zero.name, "zero");
    zero.dtype = DC_F32, zero.ndim = 2, zero.shape[0] = 0, zero.shape[1] = 3, zero.data = bytes;
    dc_tensor_set_contiguous(&zero);
    dc_tensor mixed[3] = {u8, i32, zero};
    st_seed("dtypes", mixed, 3, NULL, NULL, 0);
    /* hand-written JSON: escapes, a foreign dtype, padding, overlapping offsets */
    static const char *headers[] = {
        "{\"a\\u00e9\\n\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},\"__metadata__\":{\"k\":"
        "\"v\"}}  ",
        "{\"h\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,4]}}",
        ("{\"a\":{\"dtype\":\"U8\",\"shape\":[4],\"data_offsets\":[0,4]},\"b\":{\"dtype\":\"U8\",\"shape\":["
         "2],"
         "\"data_offsets\":[2,4]}}"),
        "{\"a\":{\"shape\":[],\"dtype\":\"I64\",\"data_offsets\":[0,8],\"extra\":[1,{\"x\":null}]}}",
    };
    const char *names[] = {"escapes", "f16", "overlap", "extra_field"};
    for (int i = 0; i < 4; i++) {
        buf b = {0};
        uint64_t hl = strlen(headers[i]);
        for (int s = 0; s < 8; s++) put_u8(&b, (unsigned)(hl >> (8 * s)) & 0xff);
        put_str(&b, headers[i]);
        for (int k = 0; k < (i == 3 ? 8 : 4); k++) put_u8(&b, (unsigned)k);
        emit_buf("safetensors", names[i], &b);
    }
    char path[1024];
    snprintf(path, sizeof path, "%s/tests/fixtures/torch_written.safetensors", src);
    size_t n;
    uint8_t *p = slurp(path, &n);
    if (p) {
        emit("safetensors", "torch_written", p, n);
        emit("safetensors", "truncated", p, n - 3);
        free(p);
    }
}

/* ---- npy ---------------------------------------------------------------------------------------------- */

static void npy_seed(const char *name, dc_dtype dtype, int ndim, const int64_t *shape, const void *data) {
    char path[1024];
    fuzz_path(path, sizeof path, "seed.npy");
    if (dc_npy_write(path, dtype, ndim, shape, data) != DC_OK) {
        fprintf(stderr, "make_seeds: %s\n", dc_last_error());
        exit(1);
    }
    size_t len;
    uint8_t *p = slurp(path, &len);
    emit("npy", name, p, len);
    free(p);
}

/* A hand-written .npy: magic, version, header length (2 bytes in 1.0, 4 in 2.0), header, data. */
static void npy_raw(const char *name, int version, const char *header, const void *data, size_t n) {
    buf b = {0};
    put(&b, "\x93NUMPY", 6);
    put_u8(&b, (unsigned)version), put_u8(&b, 0);
    size_t hl = strlen(header);
    for (int s = 0; s < (version == 1 ? 2 : 4); s++) put_u8(&b, (unsigned)(hl >> (8 * s)) & 0xff);
    put_str(&b, header);
    put(&b, data, n);
    emit_buf("npy", name, &b);
}

static void npy_seeds(void) {
    float f[6] = {1, 2, 3, 4, 5, 6};
    int64_t s23[2] = {2, 3}, s0[3] = {0, 4, 1}, s6[1] = {6};
    npy_seed("f32_2x3", DC_F32, 2, s23, f);
    npy_seed("scalar_i64", DC_I64, 0, NULL, f);
    npy_seed("empty_u8", DC_U8, 3, s0, f);
    npy_seed("i32_6", DC_I32, 1, s6, f);
    /* version 2.0 header with the '|u1' spelling; Fortran order; big-endian; a header length past the end */
    npy_raw("v2_u1", 2, "{'descr': '|u1', 'fortran_order': False, 'shape': (3,), }\n", "abc", 3);
    npy_raw("fortran", 1, "{'descr': '<f4', 'fortran_order': True, 'shape': (1,), }\n", "\0\0\x80\x3f", 4);
    npy_raw("big_endian", 1, "{'descr': '>f4', 'fortran_order': False, 'shape': (1,),}\n", "\x3f\x80\0\0", 4);
    npy_raw("trailing_comma_shape", 1, "{'shape': (2, 1, ), 'fortran_order': False, 'descr': '<i4'}\n",
            "\1\0\0\0\2\0\0\0", 8);
}

/* ---- checkpoints -------------------------------------------------------------------------------------- */

/* flags, step, marker length, model length, marker, model, state */
static void ckpt_pack(const char *name, uint8_t flags, const char *dir, int64_t step) {
    char paths[3][1024];
    const char *kinds[3] = {"DONE", "model", "state"};
    buf parts[3] = {{0}, {0}, {0}};
    for (int k = 0; k < 3; k++) {
        dc_ckpt_path(paths[k], sizeof paths[k], dir, kinds[k], step);
        size_t n;
        uint8_t *p = slurp(paths[k], &n);
        if (!p) {
            fprintf(stderr, "make_seeds: %s missing\n", paths[k]);
            exit(1);
        }
        put(&parts[k], p, n);
        free(p);
    }
    buf b = {0};
    put_u8(&b, flags);
    put_u8(&b, (unsigned)step);
    put_u16(&b, parts[0].n);
    put_u16(&b, parts[1].n);
    for (int k = 0; k < 3; k++) {
        put(&b, parts[k].p, parts[k].n);
        free(parts[k].p);
    }
    emit_buf("checkpoint", name, &b);
}

static void ckpt_seeds(void) {
    char dir[1024];
    fuzz_path(dir, sizeof dir, "ckpt_seed");
    static fuzz_net fn;
    fuzz_net_init(&fn, 2);
    dc_train_state st;
    memset(&st, 0, sizeof st);
    st.step = 5;
    st.epoch = 2;
    st.step_in_epoch = 1;
    st.steps_per_epoch = 2;
    st.seed = 42;
    st.config_hash = 0x0123456789abcdefull;
    st.world_size = 1;
    snprintf(st.stage, sizeof st.stage, "stage1");
    st.train_seconds = 1.5;
    dc_ckpt_warnings w;
    dc_ckpt_warnings_clear(&w);
    if (dc_ckpt_save(dir, &fn.net, &fn.sgd, &st, NULL, 0, &w) != DC_OK) {
        fprintf(stderr, "make_seeds: %s\n", dc_last_error());
        exit(1);
    }
    ckpt_pack("stage1_sgd", 0x10 | 0x20 | 0x40, dir, 5);
    ckpt_pack("auto_marker", 0x01 | 0x10, dir, 5);
    ckpt_pack("repair_crcs", 0x81, dir, 5);
    ckpt_pack("no_marker", 0x02, dir, 5);
    /* without momentum, with per-rank BN rows of 2 ranks, stage lws */
    float rank_buffers[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    dc_ckpt_extra extra = {NULL, 0, rank_buffers, 2};
    st.step = 7;
    st.epoch = 3;
    st.world_size = 2;
    snprintf(st.stage, sizeof st.stage, "lws");
    if (dc_ckpt_save(dir, &fn.net, NULL, &st, &extra, 0, &w) != DC_OK) {
        fprintf(stderr, "make_seeds: %s\n", dc_last_error());
        exit(1);
    }
    ckpt_pack("lws_rank_buffers", 0x00, dir, 7);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s <corpus dir> <source dir>\n", argv[0]);
        return 2;
    }
    corpus = argv[1];
    mkdir(corpus, 0755);
    config_seeds(argv[2]);
    list_seeds();
    idx_seeds();
    cifar_seeds();
    jpeg_seeds(argv[2]);
    st_seeds(argv[2]);
    npy_seeds();
    ckpt_seeds();
    printf("seeds written to %s\n", corpus);
    return 0;
}
