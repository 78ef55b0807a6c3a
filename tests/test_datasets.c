/*
 * test_datasets.c: dc_dataset end to end over synthetic files written in a temp dir, plus the real data
 * when it is installed (Fashion-MNIST from Debian, the CIFAR-10 JPEG folder in ../shared).
 *
 * Oracles:
 *   - pixels: get_batch(augment = 0) equals ((float)v / 255 - mean) / std of the pixels the test itself wrote
 *     (IDX, CIFAR planar -> HWC) or decoded with dc_jpeg_decode (lists), element by element;
 *   - augmentation: get_batch(augment = 1) equals dc_transform_apply with key(seed, epoch, index), and a
 *     sample's output does not depend on the other indices of its batch (the rank-independence proxy);
 *   - subsets: LT keeps exactly the first n_c of each class (checked through the source indices), the carved
 *     val split is disjoint, balanced, deterministic;
 *   - streaming equals in-memory, with and without prefetch, including the eviction path;
 *   - every bad input fails with a message naming the file (and the list line).
 */
#define _GNU_SOURCE /* nftw */
#include "datasets/dataset.h"
#include "datasets/image.h"

#include "core/check.h"
#include "core/rng.h"
#include "testutil.h"

#include <ftw.h>
#include <stdint.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>

#define SHARED DC_SOURCE_DIR "/../shared/data"

static char tmp_root[64];

static int has(const char *needle) {
    return strstr(dc_last_error(), needle) != NULL;
}

#define EXPECT_FAIL(expr, needle1, needle2)                                                                  \
    do {                                                                                                     \
        dc_clear_error();                                                                                    \
        int rc_ = (expr);                                                                                    \
        EXPECTF(rc_ == DC_FAIL && has(needle1) && has(needle2), "rc %d, wanted '%s' and '%s' in '%s'", rc_,  \
                needle1, needle2, dc_last_error());                                                          \
    } while (0)

/* ---- files ----------------------------------------------------------------------------------------------
 */

static void path_in(char *out, size_t cap, const char *dir, const char *name) {
    snprintf(out, cap, "%s/%s", dir, name);
}

static void make_dir(const char *dir) {
    REQUIRE(mkdir(dir, 0755) == 0);
}

static void write_bytes(const char *path, const void *data, size_t len, int gz) {
    if (gz) {
        gzFile f = gzopen(path, "wb");
        REQUIRE(f != NULL);
        REQUIRE(len == 0 || gzwrite(f, data, (unsigned)len) == (int)len);
        REQUIRE(gzclose(f) == Z_OK);
    } else {
        FILE *f = fopen(path, "wb");
        REQUIRE(f != NULL);
        REQUIRE(len == 0 || fwrite(data, 1, len, f) == len);
        fclose(f);
    }
}

static void truncate_file(const char *path, long keep) {
    REQUIRE(truncate(path, keep) == 0);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(p);
}

static void new_dir(char *out, size_t cap, const char *name) {
    path_in(out, cap, tmp_root, name);
    make_dir(out);
}

static dc_training_opt base_opt(const char *dataset, const char *root, int channels, int size, int classes) {
    dc_training_opt o;
    memset(&o, 0, sizeof o);
    snprintf(o.dataset, sizeof o.dataset, "%s", dataset);
    snprintf(o.data_root, sizeof o.data_root, "%s", root);
    o.in_channels = channels;
    o.image_size = size;
    o.num_classes = classes;
    for (int c = 0; c < DC_MAX_CHANNELS; c++) o.mean[c] = 0.25f + 0.125f * c, o.std[c] = 0.3f - 0.05f * c;
    o.augment = DC_AUG_NONE;
    o.imb_type = DC_IMB_NONE;
    o.imb_factor = 1;
    o.step_minor_frac = 0.5;
    o.seed = 7;
    return o;
}

/* ((float)v / 255 - mean) / std: ToTensor + Normalize as torch computes it. */
static float normalised(uint8_t v, const dc_training_opt *o, int ch) {
    return ((float)v / 255.0f - o->mean[ch]) / o->std[ch];
}

/* out[k] of a batch against the HWC image `pix` (w = h = size), no augmentation. */
static int sample_matches(const float *out, const uint8_t *pix, int size, int channels,
                          const dc_training_opt *o) {
    for (int ch = 0; ch < channels; ch++)
        for (int p = 0; p < size * size; p++)
            if (fabsf(out[ch * size * size + p] - normalised(pix[p * channels + ch], o, ch)) > 1e-6f)
                return 0;
    return 1;
}

/* ---- IDX ------------------------------------------------------------------------------------------------
 */

static uint8_t idx_pixel(int i, int p) {
    return (uint8_t)((i * 37 + p * 11 + 5) & 255);
}
static int idx_label(int i) {
    return (i * 7) % 10;
}

/* Writes <prefix>-images-idx3-ubyte and <prefix>-labels-idx1-ubyte (+ ".gz" when gz). */
static void write_idx(const char *dir, const char *prefix, int n, int side, int gz, uint32_t image_magic,
                      int n_labels, int bad_label_at) {
    char path[512], name[64];
    size_t bytes = 16 + (size_t)n * side * side;
    uint8_t *buf = malloc(bytes);
    uint32_t hdr[4] = {image_magic, (uint32_t)n, (uint32_t)side, (uint32_t)side};
    for (int k = 0; k < 4; k++)
        for (int b = 0; b < 4; b++) buf[4 * k + b] = (uint8_t)(hdr[k] >> (24 - 8 * b));
    for (int i = 0; i < n; i++)
        for (int p = 0; p < side * side; p++) buf[16 + (size_t)i * side * side + p] = idx_pixel(i, p);
    snprintf(name, sizeof name, "%s-images-idx3-ubyte%s", prefix, gz ? ".gz" : "");
    path_in(path, sizeof path, dir, name);
    write_bytes(path, buf, bytes, gz);
    free(buf);
    uint8_t *lab = malloc(8 + (size_t)n_labels);
    uint32_t lh[2] = {0x00000801u, (uint32_t)n_labels};
    for (int k = 0; k < 2; k++)
        for (int b = 0; b < 4; b++) lab[4 * k + b] = (uint8_t)(lh[k] >> (24 - 8 * b));
    for (int i = 0; i < n_labels; i++) lab[8 + i] = (uint8_t)(i == bad_label_at ? 10 : idx_label(i));
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte%s", prefix, gz ? ".gz" : "");
    path_in(path, sizeof path, dir, name);
    write_bytes(path, lab, 8 + (size_t)n_labels, gz);
    free(lab);
}

static void test_idx(void) {
    char dir[256], path[512];
    new_dir(dir, sizeof dir, "idx");
    write_idx(dir, "train", 60, 6, 0, 0x803, 60, -1);
    write_idx(dir, "t10k", 20, 6, 1, 0x803, 20, -1);
    dc_training_opt o = base_opt("mnist", dir, 1, 6, 10);
    dc_dataset *ds;
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds) == DC_OK);
    EXPECT(dc_dataset_size(ds) == 60 && dc_dataset_num_classes(ds) == 10);
    EXPECT(dc_dataset_channels(ds) == 1 && dc_dataset_image_size(ds) == 6 && !dc_dataset_is_streaming(ds));
    int labels_ok = 1;
    for (int i = 0; i < 60; i++) labels_ok &= dc_dataset_labels(ds)[i] == idx_label(i);
    EXPECT(labels_ok);
    for (int c = 0; c < 10; c++) EXPECT(dc_dataset_class_counts(ds)[c] == 6);
    EXPECTF(strstr(dc_dataset_describe(ds), "mnist train: 60 images, 10 classes") != NULL, "%s",
            dc_dataset_describe(ds));
    EXPECT(!strcmp(dc_dataset_class_name(ds, 3), "3"));
    int64_t idx[3] = {59, 0, 17};
    float out[3 * 36];
    int32_t lab[3];
    REQUIRE(dc_dataset_get_batch(ds, idx, 3, 0, 1, 0, out, lab) == DC_OK);
    for (int k = 0; k < 3; k++) {
        uint8_t pix[36];
        for (int p = 0; p < 36; p++) pix[p] = idx_pixel((int)idx[k], p);
        EXPECTF(sample_matches(out + k * 36, pix, 6, 1, &o), "IDX sample %lld", (long long)idx[k]);
        EXPECT(lab[k] == idx_label((int)idx[k]));
    }
    dc_dataset_free(ds);
    /* grey replicated to 3 channels (the transform's conversion), each with its own mean/std */
    o.in_channels = 3;
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds) == DC_OK);
    float out3[3 * 36];
    REQUIRE(dc_dataset_get_batch(ds, idx, 1, 0, 1, 0, out3, lab) == DC_OK);
    uint8_t rgb[3 * 36];
    for (int p = 0; p < 36; p++) rgb[3 * p] = rgb[3 * p + 1] = rgb[3 * p + 2] = idx_pixel(59, p);
    EXPECT(dc_dataset_channels(ds) == 3 && sample_matches(out3, rgb, 6, 3, &o));
    dc_dataset_free(ds);
    o.in_channels = 1;

    /* the gzip test split, Fashion-MNIST's class names */
    snprintf(o.dataset, sizeof o.dataset, "fashion_mnist");
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_TEST, &ds) == DC_OK);
    EXPECT(dc_dataset_size(ds) == 20);
    EXPECT(!strcmp(dc_dataset_class_name(ds, 0), "T-shirt/top") &&
           !strcmp(dc_dataset_class_name(ds, 9), "Ankle boot"));
    REQUIRE(dc_dataset_get_batch(ds, idx + 2, 1, 0, 1, 0, out, lab) == DC_OK);
    uint8_t pix[36];
    for (int p = 0; p < 36; p++) pix[p] = idx_pixel(17, p);
    EXPECT(sample_matches(out, pix, 6, 1, &o));
    dc_dataset_free(ds);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_VAL, &ds), "val_per_class", "fashion_mnist");

    /* bad inputs */
    char bad[256];
    new_dir(bad, sizeof bad, "idx_missing");
    o = base_opt("mnist", bad, 1, 6, 10);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), "train-images-idx3-ubyte", "not found");

    new_dir(bad, sizeof bad, "idx_magic");
    write_idx(bad, "train", 10, 6, 0, 0x801, 10, -1);
    o = base_opt("mnist", bad, 1, 6, 10);
    path_in(path, sizeof path, bad, "train-images-idx3-ubyte");
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), path, "bad magic 0x00000801");

    new_dir(bad, sizeof bad, "idx_truncated");
    write_idx(bad, "train", 60, 6, 0, 0x803, 60, -1);
    path_in(path, sizeof path, bad, "train-images-idx3-ubyte");
    truncate_file(path, 16 + 100);
    o = base_opt("mnist", bad, 1, 6, 10);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), path, "expected 2160 bytes of pixels");
    EXPECT(has("read 100"));

    new_dir(bad, sizeof bad, "idx_truncated_gz");
    write_idx(bad, "train", 60, 6, 1, 0x803, 60, -1);
    path_in(path, sizeof path, bad, "train-images-idx3-ubyte.gz");
    struct stat st;
    REQUIRE(stat(path, &st) == 0);
    truncate_file(path, (long)st.st_size / 2);
    o = base_opt("mnist", bad, 1, 6, 10);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), path, "truncated");

    new_dir(bad, sizeof bad, "idx_count");
    write_idx(bad, "train", 60, 6, 0, 0x803, 59, -1);
    o = base_opt("mnist", bad, 1, 6, 10);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), "train-labels-idx1-ubyte", "59 labels, but");

    new_dir(bad, sizeof bad, "idx_label");
    write_idx(bad, "train", 60, 6, 1, 0x803, 60, 33);
    o = base_opt("mnist", bad, 1, 6, 10);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), "train-labels-idx1-ubyte.gz",
                "label 10 of sample 33");

    new_dir(bad, sizeof bad, "idx_long");
    write_idx(bad, "train", 60, 6, 0, 0x803, 60, -1);
    path_in(path, sizeof path, bad, "train-images-idx3-ubyte");
    truncate_file(path, 16 + 2160 + 7);
    o = base_opt("mnist", bad, 1, 6, 10);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), path, "longer than its header");

    new_dir(bad, sizeof bad, "idx_empty");
    write_idx(bad, "train", 60, 6, 0, 0x803, 60, -1);
    path_in(path, sizeof path, bad, "train-labels-idx1-ubyte");
    truncate_file(path, 0);
    o = base_opt("mnist", bad, 1, 6, 10);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), path, "IDX header");
}

/* ---- CIFAR binary ----------------------------------------------------------------------------------------
 */

static uint8_t cifar_planar(int i, int ch, int p) {
    return (uint8_t)((i * 13 + ch * 101 + p * 7) & 255);
}

/* records [first, first + n) of a CIFAR-10 (cifar100 = 0) or CIFAR-100 file; label of record i: i % classes
 */
static void write_cifar(const char *path, int first, int n, int cifar100, int gz, int bad_label_at) {
    size_t rec = cifar100 ? 3074 : 3073;
    uint8_t *buf = malloc(rec * (size_t)n);
    for (int r = 0; r < n; r++) {
        int i = first + r;
        uint8_t *d = buf + rec * (size_t)r;
        if (cifar100)
            d[0] = (uint8_t)((i % 100) / 5), d[1] = (uint8_t)(i % 100);
        else
            d[0] = (uint8_t)(i % 10);
        if (i == bad_label_at) d[cifar100 ? 0 : 0] = cifar100 ? 20 : 10;
        for (int ch = 0; ch < 3; ch++)
            for (int p = 0; p < 1024; p++) d[(cifar100 ? 2 : 1) + ch * 1024 + p] = cifar_planar(i, ch, p);
    }
    write_bytes(path, buf, rec * (size_t)n, gz);
    free(buf);
}

static void write_cifar10_dir(const char *dir, int bad_label_at) {
    char path[512], name[64];
    for (int b = 1; b <= 5; b++) {
        snprintf(name, sizeof name, "data_batch_%d.bin", b);
        path_in(path, sizeof path, dir, name);
        write_cifar(path, (b - 1) * 100, 100, 0, b % 2 == 0, bad_label_at);
    }
    path_in(path, sizeof path, dir, "test_batch.bin");
    write_cifar(path, 1000, 30, 0, 0, -1);
}

static void cifar_hwc(int i, uint8_t *pix) {
    for (int p = 0; p < 1024; p++)
        for (int ch = 0; ch < 3; ch++) pix[p * 3 + ch] = cifar_planar(i, ch, p);
}

static void test_cifar(void) {
    char dir[256], path[512];
    new_dir(dir, sizeof dir, "cifar10");
    write_cifar10_dir(dir, -1);
    dc_training_opt o = base_opt("cifar10", dir, 3, 32, 10);
    dc_dataset *ds, *ds2;
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds) == DC_OK);
    EXPECT(dc_dataset_size(ds) == 500 && dc_dataset_channels(ds) == 3 && dc_dataset_image_size(ds) == 32);
    for (int c = 0; c < 10; c++) EXPECT(dc_dataset_class_counts(ds)[c] == 50);
    int64_t idx[4] = {499, 0, 250, 123};
    static float out[4 * 3072], one[3072];
    int32_t lab[4];
    uint8_t pix[3072];
    REQUIRE(dc_dataset_get_batch(ds, idx, 4, 0, 1, 0, out, lab) == DC_OK);
    for (int k = 0; k < 4; k++) {
        cifar_hwc((int)idx[k], pix);
        EXPECTF(sample_matches(out + k * 3072, pix, 32, 3, &o), "CIFAR sample %lld", (long long)idx[k]);
        EXPECT(lab[k] == idx[k] % 10);
    }
    dc_dataset_free(ds);
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_TEST, &ds) == DC_OK);
    EXPECT(dc_dataset_size(ds) == 30 && dc_dataset_labels(ds)[7] == 1007 % 10);
    dc_dataset_free(ds);

    /* the long-tailed subset: class c keeps its first floor(50 * 0.1^(c/9)) records in file order */
    o.imb_type = DC_IMB_EXP;
    o.imb_factor = 10;
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds) == DC_OK);
    int64_t want[10], total = 0;
    REQUIRE(dc_lt_profile(DC_IMB_EXP, 10, 50, 10, 0.5, want) == DC_OK);
    for (int c = 0; c < 10; c++) total += want[c];
    EXPECT(dc_dataset_size(ds) == total);
    int first_ok = 1;
    int64_t seen[10] = {0};
    for (int64_t k = 0; k < dc_dataset_size(ds); k++) {
        int64_t s = dc_dataset_source_indices(ds)[k];
        int c = (int)(s % 10);
        first_ok &= dc_dataset_labels(ds)[k] == c && s == c + 10 * seen[c]; /* the seen[c]-th record of c */
        seen[c]++;
    }
    for (int c = 0; c < 10; c++) first_ok &= seen[c] == want[c];
    EXPECT(first_ok);
    EXPECTF(strstr(dc_dataset_describe(ds), "exp long-tailed subset r=10 of 500") != NULL, "%s",
            dc_dataset_describe(ds));
    EXPECTF(strstr(dc_dataset_describe(ds), "max/min 50/5 (imbalance 10.0)") != NULL, "%s",
            dc_dataset_describe(ds));
    dc_dataset_free(ds);

    /* the carved val split of an LT subset: drawn from the samples the subset left out, so the LT training
     * counts stay the protocol's; only class 0 (which keeps all 50 of its samples) gives LT samples.
     * Disjoint, balanced, deterministic. */
    o.val_per_class = 5;
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds) == DC_OK);
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_VAL, &ds2) == DC_OK);
    EXPECT(dc_dataset_size(ds) == total - 5);
    EXPECT(dc_dataset_size(ds2) == 50);
    static unsigned char mark[500];
    memset(mark, 0, sizeof mark);
    int disjoint = 1;
    for (int64_t k = 0; k < dc_dataset_size(ds); k++) mark[dc_dataset_source_indices(ds)[k]]++;
    for (int64_t k = 0; k < dc_dataset_size(ds2); k++)
        disjoint &= mark[dc_dataset_source_indices(ds2)[k]]++ == 0;
    EXPECT(disjoint);
    for (int c = 0; c < 10; c++) {
        EXPECTF(dc_dataset_class_counts(ds2)[c] == 5, "val class %d: %lld", c,
                (long long)dc_dataset_class_counts(ds2)[c]);
        EXPECT(dc_dataset_class_counts(ds)[c] == (c == 0 ? want[c] - 5 : want[c]));
    }
    /* classes 1..9: every val sample comes from beyond the first want[c] records of its class */
    int from_remainder = 1;
    for (int64_t k = 0; k < dc_dataset_size(ds2); k++) {
        int64_t src = dc_dataset_source_indices(ds2)[k];
        int c = (int)(src % 10);
        if (c > 0) from_remainder &= src / 10 >= want[c];
    }
    EXPECT(from_remainder);
    EXPECTF(strstr(dc_dataset_describe(ds),
                   "val drawn from the samples the LT subset left out (1 class(es)") != NULL,
            "%s", dc_dataset_describe(ds));
    EXPECTF(strstr(dc_dataset_describe(ds2), "5 per class from the samples the LT subset left out") != NULL,
            "%s", dc_dataset_describe(ds2));
    dc_dataset *again;
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_VAL, &again) == DC_OK);
    EXPECT(dc_dataset_size(again) == dc_dataset_size(ds2) &&
           !memcmp(dc_dataset_source_indices(again), dc_dataset_source_indices(ds2),
                   sizeof(int64_t) * (size_t)dc_dataset_size(ds2)));
    dc_dataset_free(again);
    o.seed = 8;
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_VAL, &again) == DC_OK);
    EXPECT(memcmp(dc_dataset_source_indices(again), dc_dataset_source_indices(ds2),
                  sizeof(int64_t) * (size_t)dc_dataset_size(ds2)) != 0);
    dc_dataset_free(again);
    dc_dataset_free(ds);
    dc_dataset_free(ds2);

    /* augmentation: keyed by (seed, epoch, index), independent of the batch */
    o = base_opt("cifar10", dir, 3, 32, 10);
    o.augment = DC_AUG_CIFAR;
    o.crop_padding = 4;
    o.hflip = 1;
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds) == DC_OK);
    int64_t batch_a[4] = {3, 7, 11, 400}, batch_b[2] = {11, 3};
    static float out_b[2 * 3072];
    REQUIRE(dc_dataset_get_batch(ds, batch_a, 4, 1, 99, 2, out, lab) == DC_OK);
    REQUIRE(dc_dataset_get_batch(ds, batch_b, 2, 1, 99, 2, out_b, lab) == DC_OK);
    EXPECT(!memcmp(out + 2 * 3072, out_b, sizeof(float) * 3072));
    EXPECT(!memcmp(out, out_b + 3072, sizeof(float) * 3072));
    dc_transform t;
    dc_transform_from_config(&o, &t);
    static uint8_t scratch_buf[1 << 20];
    REQUIRE(dc_transform_scratch_bytes(&t, &(dc_image){32, 32, 3, NULL, 0}) <= sizeof scratch_buf);
    int direct_ok = 1, differs_from_eval = 0, differs_next_epoch = 0;
    static float out_e[4 * 3072], out_n[4 * 3072];
    REQUIRE(dc_dataset_get_batch(ds, batch_a, 4, 0, 99, 2, out_e, lab) == DC_OK);
    REQUIRE(dc_dataset_get_batch(ds, batch_a, 4, 1, 99, 3, out_n, lab) == DC_OK);
    for (int k = 0; k < 4; k++) {
        cifar_hwc((int)batch_a[k], pix);
        dc_image img = {32, 32, 3, pix, sizeof pix};
        REQUIRE(dc_transform_apply(&t, &img, 1, dc_rng_key(99, DC_RNG_AUGMENT, 2, (uint64_t)batch_a[k]), one,
                                   scratch_buf) == DC_OK);
        direct_ok &= !memcmp(one, out + k * 3072, sizeof one);
        differs_from_eval |= memcmp(out_e + k * 3072, out + k * 3072, sizeof one) != 0;
        differs_next_epoch |= memcmp(out_n + k * 3072, out + k * 3072, sizeof one) != 0;
    }
    EXPECT(direct_ok && differs_from_eval && differs_next_epoch);
    /* index checks */
    int64_t bad_idx[2] = {0, 500};
    EXPECT_FAIL(dc_dataset_get_batch(ds, bad_idx, 2, 0, 1, 0, out, lab), "index 500", "out of range");
    bad_idx[1] = -1;
    EXPECT_FAIL(dc_dataset_prefetch(ds, bad_idx, 2, 0, 1, 0), "index -1", "out of range");
    EXPECT(dc_dataset_prefetch(ds, batch_a, 4, 0, 1, 0) == DC_OK); /* in memory: a no-op */
    dc_dataset_free(ds);

    /* CIFAR-100: fine labels */
    char dir100[256];
    new_dir(dir100, sizeof dir100, "cifar100");
    path_in(path, sizeof path, dir100, "train.bin");
    write_cifar(path, 0, 200, 1, 1, -1);
    path_in(path, sizeof path, dir100, "test.bin");
    write_cifar(path, 0, 100, 1, 0, -1);
    o = base_opt("cifar100", dir100, 3, 32, 100);
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds) == DC_OK);
    EXPECT(dc_dataset_size(ds) == 200 && dc_dataset_num_classes(ds) == 100 &&
           dc_dataset_labels(ds)[157] == 57);
    REQUIRE(dc_dataset_get_batch(ds, idx + 3, 1, 0, 1, 0, out, lab) == DC_OK);
    cifar_hwc(123, pix);
    EXPECT(sample_matches(out, pix, 32, 3, &o) && lab[0] == 23);
    dc_dataset_free(ds);
    o.num_classes = 10;
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), "training_opt.num_classes", "100 classes");

    /* bad inputs */
    char bad[256];
    new_dir(bad, sizeof bad, "cifar_size");
    write_cifar10_dir(bad, -1);
    path_in(path, sizeof path, bad, "data_batch_3.bin");
    truncate_file(path, 3073 * 100 - 5);
    o = base_opt("cifar10", bad, 3, 32, 10);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), path, "not a multiple of the 3073-byte");
    new_dir(bad, sizeof bad, "cifar_gz_truncated");
    write_cifar10_dir(bad, -1);
    path_in(path, sizeof path, bad, "data_batch_2.bin"); /* even batches are gzip */
    struct stat st;
    REQUIRE(stat(path, &st) == 0);
    truncate_file(path, (long)st.st_size - 100);
    o = base_opt("cifar10", bad, 3, 32, 10);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), path, "truncated");
    new_dir(bad, sizeof bad, "cifar_label");
    write_cifar10_dir(bad, 321);
    o = base_opt("cifar10", bad, 3, 32, 10);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), "data_batch_4.bin: record 21: label 10",
                "out of range");
    new_dir(bad, sizeof bad, "cifar_missing");
    write_cifar10_dir(bad, -1);
    path_in(path, sizeof path, bad, "data_batch_4.bin");
    REQUIRE(remove(path) == 0);
    o = base_opt("cifar10", bad, 3, 32, 10);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), "data_batch_4.bin", "not found");
    path_in(path, sizeof path, bad, "test_batch.bin");
    truncate_file(path, 0);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TEST, &ds), path, "empty file");
    path_in(path, sizeof path, dir100, "train.bin");
    write_cifar(path, 0, 200, 1, 0, 150);
    o = base_opt("cifar100", dir100, 3, 32, 100);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), "record 150: coarse label 20", path);
    o = base_opt("cifar10", dir, 3, 32, 10);
    o.imb_type = DC_IMB_EXP;
    o.imb_factor = 0.5;
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), "training_opt.imb_factor", "0.5");
    snprintf(o.dataset, sizeof o.dataset, "cifar11");
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), "training_opt.dataset", "cifar11");
}

/* ---- JPEG lists ------------------------------------------------------------------------------------------
 */

enum { LIST_CLASSES = 3, LIST_PER_CLASS = 6, LIST_N = LIST_CLASSES * LIST_PER_CLASS, LIST_SIDE = 16 };
static const char *const list_class_dirs[LIST_CLASSES] = {"c0", "c1", "c 2"};
static uint8_t list_pix[LIST_N][LIST_SIDE * LIST_SIDE * 3]; /* decoded with dc_jpeg_decode, list order */

static void list_rel_path(char *out, size_t cap, int i) {
    snprintf(out, cap, "train/%s/im %03d.jpg", list_class_dirs[i / LIST_PER_CLASS], i % LIST_PER_CLASS);
}

/* root/train/<class>/im NNN.jpg (a space in a folder and in the names), list order = class-major. */
static void write_jpeg_tree(const char *root) {
    char path[512], rel[128];
    path_in(path, sizeof path, root, "train");
    make_dir(path);
    for (int c = 0; c < LIST_CLASSES; c++) {
        snprintf(rel, sizeof rel, "train/%s", list_class_dirs[c]);
        path_in(path, sizeof path, root, rel);
        make_dir(path);
    }
    for (int i = 0; i < LIST_N; i++) {
        uint8_t src[LIST_SIDE * LIST_SIDE * 3];
        for (int y = 0; y < LIST_SIDE; y++)
            for (int x = 0; x < LIST_SIDE; x++)
                for (int ch = 0; ch < 3; ch++)
                    src[(y * LIST_SIDE + x) * 3 + ch] = (uint8_t)((x * 9 + y * 5 + i * 23 + ch * 60) & 255);
        dc_image img = {LIST_SIDE, LIST_SIDE, 3, src, sizeof src};
        uint8_t *jpg;
        size_t len;
        REQUIRE(dc_jpeg_encode(&img, 92, &jpg, &len) == DC_OK);
        list_rel_path(rel, sizeof rel, i);
        path_in(path, sizeof path, root, rel);
        write_bytes(path, jpg, len, 0);
        dc_image dec = {0};
        REQUIRE(dc_jpeg_decode(jpg, len, path, 0, 3, &dec) == DC_OK);
        REQUIRE(dec.w == LIST_SIDE && dec.h == LIST_SIDE && dec.c == 3);
        memcpy(list_pix[i], dec.pix, sizeof list_pix[i]);
        dc_image_free(&dec);
        free(jpg);
    }
}

/* A list of the samples `which` (-1 ends), each "path label\n"; `extra` is appended verbatim. */
static void write_list(const char *path, const int *which, const char *extra) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f != NULL);
    char rel[128];
    for (int k = 0; which[k] >= 0; k++) {
        list_rel_path(rel, sizeof rel, which[k]);
        fprintf(f, "%s %d\n", rel, which[k] / LIST_PER_CLASS);
    }
    if (extra) fputs(extra, f);
    fclose(f);
}

static int all_samples[LIST_N + 1];

static dc_training_opt list_opt(const char *root, const char *train, int classes) {
    dc_training_opt o = base_opt("list", root, 3, LIST_SIDE, classes);
    snprintf(o.train_list, sizeof o.train_list, "%s", train);
    o.decode_threads = 3; /* the pool's concurrency is exercised even with OMP_NUM_THREADS=1 */
    return o;
}

/* get_batch over every sample (in a scrambled order) against the decoded pixels. */
static int check_all_eval(dc_dataset *ds, const dc_training_opt *o) {
    const int64_t n = dc_dataset_size(ds);
    static float out[LIST_N * LIST_SIDE * LIST_SIDE * 3];
    int64_t idx[LIST_N];
    int32_t lab[LIST_N];
    for (int64_t k = 0; k < n; k++) idx[k] = (k * 7) % n;
    if (dc_dataset_get_batch(ds, idx, (int)n, 0, 5, 0, out, lab) != DC_OK) return 0;
    int ok = 1;
    for (int64_t k = 0; k < n; k++) {
        int64_t src = dc_dataset_source_indices(ds)[idx[k]];
        ok &= sample_matches(out + k * LIST_SIDE * LIST_SIDE * 3, list_pix[src], LIST_SIDE, 3, o);
        ok &= lab[k] == src / LIST_PER_CLASS;
    }
    return ok;
}

static void test_lists(void) {
    char root[256], path[512];
    new_dir(root, sizeof root, "jpg");
    write_jpeg_tree(root);
    for (int i = 0; i < LIST_N; i++) all_samples[i] = i;
    all_samples[LIST_N] = -1;
    path_in(path, sizeof path, root, "train.txt");
    write_list(path, all_samples, "\r\n\n");
    path_in(path, sizeof path, root, "classes.txt");
    write_bytes(path, "cat\ndog\nbird\n", 13, 0);

    const dc_dataset_options stream = {DC_STORAGE_STREAM, 0, 0}, memory = {DC_STORAGE_MEMORY, 0, 0};
    dc_training_opt o = list_opt(root, "train.txt", 0);
    snprintf(o.class_names, sizeof o.class_names, "classes.txt");
    dc_dataset *ds, *dm;
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_TRAIN, &dm) == DC_OK); /* AUTO: 16 px images stay in memory */
    EXPECT(!dc_dataset_is_streaming(dm) && dc_dataset_size(dm) == LIST_N && dc_dataset_num_classes(dm) == 3);
    EXPECT(!strcmp(dc_dataset_class_name(dm, 2), "bird"));
    EXPECT(check_all_eval(dm, &o));
    EXPECTF(strstr(dc_dataset_describe(dm), "list train: 18 images, 3 classes, max/min 6/6") != NULL, "%s",
            dc_dataset_describe(dm));
    REQUIRE(dc_dataset_open_ex(&o, DC_SPLIT_TRAIN, &stream, &ds) == DC_OK);
    EXPECT(dc_dataset_is_streaming(ds));
    EXPECTF(strstr(dc_dataset_describe(ds), "streaming") != NULL, "%s", dc_dataset_describe(ds));
    EXPECT(check_all_eval(ds, &o));

    /* prefetch: hits, misses, and the third batch evicting the oldest; all give the same floats */
    enum { PER = LIST_SIDE * LIST_SIDE * 3 };
    int64_t a[3] = {0, 5, 17}, b[2] = {9, 2}, c[4] = {1, 1, 12, 6};
    static float ref_a[3 * PER], ref_b[2 * PER], ref_c[4 * PER], got[4 * PER];
    int32_t lab[4];
    REQUIRE(dc_dataset_get_batch(dm, a, 3, 0, 1, 0, ref_a, lab) == DC_OK);
    REQUIRE(dc_dataset_get_batch(dm, b, 2, 0, 1, 0, ref_b, lab) == DC_OK);
    REQUIRE(dc_dataset_get_batch(dm, c, 4, 0, 1, 0, ref_c, lab) == DC_OK);
    REQUIRE(dc_dataset_prefetch(ds, a, 3, 0, 1, 0) == DC_OK);
    REQUIRE(dc_dataset_get_batch(ds, a, 3, 0, 1, 0, got, lab) == DC_OK);
    EXPECT(!memcmp(got, ref_a, sizeof ref_a));
    REQUIRE(dc_dataset_prefetch(ds, b, 2, 0, 1, 0) == DC_OK);
    REQUIRE(dc_dataset_prefetch(ds, c, 4, 0, 1, 0) == DC_OK);
    REQUIRE(dc_dataset_get_batch(ds, b, 2, 0, 1, 0, got, lab) == DC_OK);
    EXPECT(!memcmp(got, ref_b, sizeof ref_b));
    REQUIRE(dc_dataset_get_batch(ds, c, 4, 0, 1, 0, got, lab) == DC_OK);
    EXPECT(!memcmp(got, ref_c, sizeof ref_c) && lab[2] == 2);
    REQUIRE(dc_dataset_prefetch(ds, a, 3, 0, 1, 0) == DC_OK);
    REQUIRE(dc_dataset_prefetch(ds, b, 2, 0, 1, 0) == DC_OK);
    REQUIRE(dc_dataset_prefetch(ds, c, 4, 0, 1, 0) == DC_OK); /* evicts a */
    REQUIRE(dc_dataset_get_batch(ds, a, 3, 0, 1, 0, got, lab) == DC_OK);
    EXPECT(!memcmp(got, ref_a, sizeof ref_a));
    REQUIRE(dc_dataset_get_batch(ds, c, 4, 0, 1, 0, got, lab) == DC_OK);
    EXPECT(!memcmp(got, ref_c, sizeof ref_c));
    REQUIRE(dc_dataset_prefetch(ds, b, 2, 1, 1, 0) == DC_OK); /* same indices, other request: not a hit */
    REQUIRE(dc_dataset_get_batch(ds, b, 2, 0, 1, 0, got, lab) == DC_OK);
    EXPECT(!memcmp(got, ref_b, sizeof ref_b));
    dc_dataset_free(ds); /* with a batch still in flight */
    dc_dataset_free(dm);

    /* augmentation: streaming == memory == dc_transform_apply with the sample's key, batch-independent */
    o.augment = DC_AUG_CIFAR;
    o.crop_padding = 2;
    o.hflip = 1;
    REQUIRE(dc_dataset_open_ex(&o, DC_SPLIT_TRAIN, &memory, &dm) == DC_OK);
    REQUIRE(dc_dataset_open_ex(&o, DC_SPLIT_TRAIN, &stream, &ds) == DC_OK);
    static float aug_m[4 * PER], aug_s[4 * PER], one[PER];
    REQUIRE(dc_dataset_get_batch(dm, c, 4, 1, 3, 1, aug_m, lab) == DC_OK);
    REQUIRE(dc_dataset_get_batch(ds, c, 4, 1, 3, 1, aug_s, lab) == DC_OK);
    EXPECT(!memcmp(aug_m, aug_s, sizeof aug_m));
    REQUIRE(dc_dataset_get_batch(ds, c + 2, 1, 1, 3, 1, one, lab) == DC_OK);
    EXPECT(!memcmp(one, aug_s + 2 * PER, sizeof one));
    /* a prefetched batch of another epoch or seed is not what get_batch returns */
    REQUIRE(dc_dataset_prefetch(ds, c, 4, 1, 3, 2) == DC_OK);
    REQUIRE(dc_dataset_get_batch(ds, c, 4, 1, 3, 1, aug_s, lab) == DC_OK);
    EXPECT(!memcmp(aug_m, aug_s, sizeof aug_m));
    REQUIRE(dc_dataset_prefetch(ds, c, 4, 1, 4, 1) == DC_OK);
    REQUIRE(dc_dataset_get_batch(ds, c, 4, 1, 3, 1, aug_s, lab) == DC_OK);
    EXPECT(!memcmp(aug_m, aug_s, sizeof aug_m));
    dc_transform t;
    dc_transform_from_config(&o, &t);
    static uint8_t scratch_buf[1 << 20];
    dc_image img = {LIST_SIDE, LIST_SIDE, 3, list_pix[12], sizeof list_pix[12]};
    REQUIRE(dc_transform_apply(&t, &img, 1, dc_rng_key(3, DC_RNG_AUGMENT, 1, 12), one, scratch_buf) == DC_OK);
    EXPECT(!memcmp(one, aug_m + 2 * PER, sizeof one));
    dc_dataset_free(ds);
    dc_dataset_free(dm);
    o.augment = DC_AUG_NONE;

    /* storage choice: over the side limit or the memory budget, AUTO streams; image_size from the images */
    dc_dataset_options small = {DC_STORAGE_AUTO, 0, 8};
    REQUIRE(dc_dataset_open_ex(&o, DC_SPLIT_TRAIN, &small, &ds) == DC_OK);
    EXPECT(dc_dataset_is_streaming(ds));
    dc_dataset_free(ds);
    dc_dataset_options budget = {DC_STORAGE_AUTO, 1000, 0};
    REQUIRE(dc_dataset_open_ex(&o, DC_SPLIT_TRAIN, &budget, &ds) == DC_OK);
    EXPECT(dc_dataset_is_streaming(ds));
    dc_dataset_free(ds);
    o.image_size = 0;
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds) == DC_OK);
    EXPECT(dc_dataset_image_size(ds) == LIST_SIDE);
    dc_dataset_free(ds);
    o.image_size = LIST_SIDE;

    /* long-tailed subset of a list, carved val, absolute list path, test split */
    o.imb_type = DC_IMB_EXP;
    o.imb_factor = 6; /* 6, floor(6 / sqrt(6)) = 2, 1 */
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds) == DC_OK);
    EXPECT(dc_dataset_size(ds) == 9 && dc_dataset_class_counts(ds)[1] == 2 &&
           dc_dataset_class_counts(ds)[2] == 1);
    EXPECT(dc_dataset_source_indices(ds)[6] == 6 && dc_dataset_source_indices(ds)[7] == 7 &&
           dc_dataset_source_indices(ds)[8] == 12);
    EXPECT(check_all_eval(ds, &o));
    dc_dataset_free(ds);
    o.imb_type = DC_IMB_NONE;
    o.val_per_class = 2;
    path_in(o.train_list, sizeof o.train_list, root, "train.txt");
    REQUIRE(dc_dataset_open_ex(&o, DC_SPLIT_VAL, &stream, &ds) == DC_OK);
    EXPECT(dc_dataset_size(ds) == 6 && dc_dataset_class_counts(ds)[0] == 2);
    EXPECT(check_all_eval(ds, &o));
    dc_dataset_free(ds);
    snprintf(o.val_list, sizeof o.val_list, "train.txt");
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), "training_opt.val_per_class", "val_list");
    o.val_per_class = 0;
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_VAL, &ds) == DC_OK);
    EXPECT(dc_dataset_size(ds) == LIST_N);
    dc_dataset_free(ds);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TEST, &ds), "training_opt.test_list", "not set");
    EXPECT(!dc_dataset_has_split(&o, DC_SPLIT_TEST) && dc_dataset_has_split(&o, DC_SPLIT_VAL));

    /* a missing image (line 3) and a broken JPEG (line 8): named with the list line */
    char rel[128], broken[512], missing[512];
    list_rel_path(rel, sizeof rel, 2);
    path_in(missing, sizeof missing, root, rel);
    char moved[512];
    snprintf(moved, sizeof moved, "%s/moved.jpg", root);
    REQUIRE(rename(missing, moved) == 0);
    list_rel_path(rel, sizeof rel, 7);
    path_in(broken, sizeof broken, root, rel);
    struct stat st;
    REQUIRE(stat(broken, &st) == 0);
    truncate_file(broken, (long)st.st_size / 2);
    o = list_opt(root, "train.txt", 3);
    char list_path[512];
    path_in(list_path, sizeof list_path, root, "train.txt");
    char where3[600], where8[600];
    snprintf(where3, sizeof where3, "%s:3", list_path);
    snprintf(where8, sizeof where8, "%s:8", list_path);
    EXPECT_FAIL(dc_dataset_open_ex(&o, DC_SPLIT_TRAIN, &memory, &dm), missing, where3);
    REQUIRE(dc_dataset_open_ex(&o, DC_SPLIT_TRAIN, &stream, &ds) == DC_OK);
    int64_t bad2[2] = {0, 2}, bad7[3] = {1, 7, 4}, good[2] = {0, 17};
    EXPECT_FAIL(dc_dataset_get_batch(ds, bad2, 2, 0, 1, 0, got, lab), missing, where3);
    EXPECT(has("cannot open"));
    EXPECT_FAIL(dc_dataset_get_batch(ds, bad7, 3, 0, 1, 0, got, lab), broken, where8);
    REQUIRE(dc_dataset_prefetch(ds, bad7, 3, 0, 1, 0) == DC_OK);
    EXPECT_FAIL(dc_dataset_get_batch(ds, bad7, 3, 0, 1, 0, got, lab), broken, where8);
    REQUIRE(dc_dataset_get_batch(ds, good, 2, 0, 1, 0, got, lab) == DC_OK); /* the pool recovers */
    EXPECT(sample_matches(got + PER, list_pix[17], LIST_SIDE, 3, &o));
    EXPECT(dc_dataset_bad_count(ds) == 0);
    dc_dataset_free(ds);

    /* skip_bad_images: the next readable image of the same class stands in, with the original key */
    o.skip_bad_images = 1;
    for (int mode = 0; mode < 2; mode++) {
        REQUIRE(dc_dataset_open_ex(&o, DC_SPLIT_TRAIN, mode ? &stream : &memory, &ds) == DC_OK);
        int64_t want_bad = mode ? 0 : 2;
        EXPECTF(dc_dataset_bad_count(ds) == want_bad, "mode %d: %lld", mode,
                (long long)dc_dataset_bad_count(ds));
        int64_t q[3] = {2, 7, 6};
        REQUIRE(dc_dataset_get_batch(ds, q, 3, 0, 1, 0, got, lab) == DC_OK);
        EXPECT(sample_matches(got, list_pix[3], LIST_SIDE, 3, &o));       /* 2 -> 3 */
        EXPECT(sample_matches(got + PER, list_pix[8], LIST_SIDE, 3, &o)); /* 7 -> 8 */
        EXPECT(sample_matches(got + 2 * PER, list_pix[6], LIST_SIDE, 3, &o));
        EXPECT(lab[0] == 0 && lab[1] == 1);
        EXPECT(dc_dataset_bad_count(ds) == 2);
        REQUIRE(dc_dataset_get_batch(ds, q, 3, 0, 1, 0, got, lab) == DC_OK); /* counted once */
        EXPECT(dc_dataset_bad_count(ds) == 2);
        dc_dataset_free(ds);
    }
    /* a class whose images are all unreadable cannot be replaced */
    path_in(path, sizeof path, root, "bad_class.txt");
    FILE *f = fopen(path, "w");
    fprintf(f, "train/c0/im 000.jpg 0\ntrain/c0/im 002.jpg 1\n");
    fclose(f);
    o = list_opt(root, "bad_class.txt", 2);
    o.skip_bad_images = 1;
    EXPECT_FAIL(dc_dataset_open_ex(&o, DC_SPLIT_TRAIN, &memory, &ds), "bad_class.txt",
                "every image of class 1");
    REQUIRE(dc_dataset_open_ex(&o, DC_SPLIT_TRAIN, &stream, &ds) == DC_OK);
    int64_t one_idx = 1;
    EXPECT_FAIL(dc_dataset_get_batch(ds, &one_idx, 1, 0, 1, 0, got, lab), "bad_class.txt",
                "every image of class 1");
    dc_dataset_free(ds);

    /* malformed lists */
    struct {
        const char *name, *text, *needle1;
        int classes;
    } bad_lists[] = {
        {"utf8.txt", "train/c0/im 000.jpg 0\ntrain/c0/\xFFim.jpg 0\n", "utf8.txt:2:", 0},
        {"range.txt", "train/c0/im 000.jpg 0\ntrain/c0/im 001.jpg 0\ntrain/c0/im 003.jpg 3\n",
         "range.txt:3:", 3},
        {"negative.txt", "train/c0/im 000.jpg -1\n", "negative.txt:1:", 0},
        {"nolabel.txt", "train/c0/im 000.jpg 0\ntrain/c0/im001.jpg\n", "nolabel.txt:2:", 0},
        {"empty.txt", "", "empty.txt", 0},
        {"gap.txt", "train/c0/im 000.jpg 0\ntrain/c 2/im 000.jpg 2\n", "gap.txt", 3},
    };
    for (size_t k = 0; k < sizeof bad_lists / sizeof *bad_lists; k++) {
        path_in(path, sizeof path, root, bad_lists[k].name);
        write_bytes(path, bad_lists[k].text, strlen(bad_lists[k].text), 0);
        o = list_opt(root, bad_lists[k].name, bad_lists[k].classes);
        dc_clear_error();
        EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), bad_lists[k].needle1, path);
    }
    EXPECT(has("class 1 has no training sample")); /* gap.txt, the last one */
    /* ... but an evaluation split may miss a class: the description says so */
    o = list_opt(root, "train.txt", 3);
    snprintf(o.test_list, sizeof o.test_list, "gap.txt");
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_TEST, &ds) == DC_OK);
    EXPECTF(strstr(dc_dataset_describe(ds), "1 class(es) without samples") != NULL, "%s",
            dc_dataset_describe(ds));
    dc_dataset_free(ds);
    o = list_opt(root, "nothere.txt", 3);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), "training_opt.train_list", "nothere.txt");
    o = list_opt("", "train.txt", 3);
    EXPECT_FAIL(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), "training_opt.data_root", "not set");
}

/* ---- real data -------------------------------------------------------------------------------------------
 */

/* Reads a whole gzip file with zlib: an independent reader for the Fashion-MNIST check. */
static uint8_t *gz_slurp(const char *path, size_t *len) {
    gzFile f = gzopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 20, used = 0;
    uint8_t *buf = malloc(cap);
    int r;
    while ((r = gzread(f, buf + used, (unsigned)(cap - used))) > 0) {
        used += (size_t)r;
        if (used == cap) buf = realloc(buf, cap *= 2);
    }
    gzclose(f);
    *len = used;
    return buf;
}

static void test_fashion_mnist(void) {
    const char *root = "/usr/share/datasets/fashion-mnist";
    if (access("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", R_OK) != 0) {
        printf("skip: Fashion-MNIST not installed (%s)\n", root);
        return;
    }
    dc_training_opt o = base_opt("fashion_mnist", "", 1, 28, 10); /* data_root "": the Debian folder */
    dc_dataset *ds;
    clock_t t0 = clock();
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds) == DC_OK);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    printf("%s (opened in %.2f s CPU)\n", dc_dataset_describe(ds), secs);
    EXPECT(dc_dataset_size(ds) == 60000);
    for (int c = 0; c < 10; c++) EXPECT(dc_dataset_class_counts(ds)[c] == 6000);
    size_t ilen, llen;
    uint8_t *images = gz_slurp("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz", &ilen);
    uint8_t *labels = gz_slurp("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz", &llen);
    REQUIRE(images && labels && ilen == 16 + 60000 * 784 && llen == 8 + 60000);
    int labels_ok = 1;
    for (int i = 0; i < 60000; i++) labels_ok &= dc_dataset_labels(ds)[i] == labels[8 + i];
    EXPECT(labels_ok);
    int64_t idx[3] = {0, 12345, 59999};
    static float out[3 * 784];
    int32_t lab[3];
    REQUIRE(dc_dataset_get_batch(ds, idx, 3, 0, 1, 0, out, lab) == DC_OK);
    for (int k = 0; k < 3; k++) EXPECT(sample_matches(out + k * 784, images + 16 + idx[k] * 784, 28, 1, &o));
    free(images);
    free(labels);
    dc_dataset_free(ds);
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_TEST, &ds) == DC_OK);
    EXPECT(dc_dataset_size(ds) == 10000);
    for (int c = 0; c < 10; c++) EXPECT(dc_dataset_class_counts(ds)[c] == 1000);
    dc_dataset_free(ds);
    /* Fashion-MNIST-LT r = 500 with a carved val split */
    o.imb_type = DC_IMB_EXP;
    o.imb_factor = 500;
    o.val_per_class = 20;
    REQUIRE(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds) == DC_OK);
    const int64_t lt[10] = {6000, 3007, 1507, 755, 378, 189, 95, 47, 23, 12};
    /* val comes from the images the LT subset left out; only class 0 (all 6000 kept) gives 20 of its own */
    for (int c = 0; c < 10; c++)
        EXPECTF(dc_dataset_class_counts(ds)[c] == lt[c] - (c == 0 ? 20 : 0), "class %d: %lld", c,
                (long long)dc_dataset_class_counts(ds)[c]);
    printf("%s\n", dc_dataset_describe(ds));
    dc_dataset_free(ds);
}

static void test_shared_cifar10(void) {
    if (access(SHARED "/cifar10/train_lt_r100.txt", R_OK) != 0) {
        printf("skip: %s not present\n", SHARED "/cifar10");
        return;
    }
    dc_training_opt o = list_opt(SHARED "/cifar10", "train_lt_r100.txt", 10);
    o.image_size = 32;
    snprintf(o.class_names, sizeof o.class_names, "classes.txt");
    const dc_dataset_options stream = {DC_STORAGE_STREAM, 0, 0};
    dc_dataset *ds;
    REQUIRE(dc_dataset_open_ex(&o, DC_SPLIT_TRAIN, &stream, &ds) == DC_OK);
    printf("%s\n", dc_dataset_describe(ds));
    EXPECT(dc_dataset_size(ds) == 12406);
    int64_t want[10];
    REQUIRE(dc_lt_profile(DC_IMB_EXP, 10, 5000, 100, 0.5, want) == DC_OK);
    for (int c = 0; c < 10; c++) EXPECT(dc_dataset_class_counts(ds)[c] == want[c]);
    EXPECT(!strcmp(dc_dataset_class_name(ds, 9), "truck"));
    /* decode 256 spread-out images through the pool, check a few against a direct decode */
    enum { B = 256, PER = 3 * 32 * 32 };
    static float out[B * PER];
    int64_t idx[B];
    int32_t lab[B];
    for (int k = 0; k < B; k++) idx[k] = (int64_t)k * 12406 / B;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    REQUIRE(dc_dataset_get_batch(ds, idx, B, 0, 1, 0, out, lab) == DC_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("cifar10 list, streaming: %d images in %.1f ms (%.0f images/s)\n", B, ms, B / ms * 1e3);
    dc_list_file lf;
    REQUIRE(dc_list_file_read(SHARED "/cifar10/train_lt_r100.txt", 10, &lf) == DC_OK);
    for (int k = 0; k < B; k += 85) {
        char path[1024];
        snprintf(path, sizeof path, "%s/cifar10/%s", SHARED, dc_list_file_path(&lf, idx[k]));
        size_t len;
        FILE *f = fopen(path, "rb");
        REQUIRE(f != NULL);
        static uint8_t jpg[1 << 16];
        len = fread(jpg, 1, sizeof jpg, f);
        fclose(f);
        dc_image img = {0};
        REQUIRE(dc_jpeg_decode(jpg, len, path, 0, 3, &img) == DC_OK);
        EXPECT(img.w == 32 && sample_matches(out + k * PER, img.pix, 32, 3, &o) &&
               lab[k] == lf.labels[idx[k]]);
        dc_image_free(&img);
    }
    dc_list_file_free(&lf);
    dc_dataset_free(ds);
    /* the same subset derived from train.txt with the exp profile, and a carved val split */
    o = list_opt(SHARED "/cifar10", "train.txt", 10);
    o.image_size = 32;
    o.imb_type = DC_IMB_EXP;
    o.imb_factor = 100;
    o.val_per_class = 20;
    REQUIRE(dc_dataset_open_ex(&o, DC_SPLIT_VAL, &stream, &ds) == DC_OK);
    EXPECT(dc_dataset_size(ds) == 200);
    printf("%s\n", dc_dataset_describe(ds));
    dc_dataset_free(ds);
    REQUIRE(dc_dataset_open_ex(&o, DC_SPLIT_TRAIN, &stream, &ds) == DC_OK);
    EXPECT(dc_dataset_size(ds) == 12406 - 20); /* only class 0 (all 5000 kept) gives LT samples to val */
    printf("%s\n", dc_dataset_describe(ds));
    dc_dataset_free(ds);
}

int main(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/dc_test_datasets_XXXXXX");
    REQUIRE(mkdtemp(tmp_root) != NULL);
    test_idx();
    test_cifar();
    test_lists();
    test_fashion_mnist();
    test_shared_cifar10();
    nftw(tmp_root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return tu_finish("test_datasets");
}
