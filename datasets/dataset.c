/*
 * dataset.c: dc_dataset, the one interface in front of every data source.
 *
 * Opening a split is a pipeline over sample indices, the same for every source, so the subsets are
 * identical whether the pixels come from an IDX file, a CIFAR batch or a list of JPEGs:
 *
 *   source (file order)  --long-tailed subset-->  LT train  --carve val-->  train | val
 *        n_src samples       first n_c per class               val_per_class per class
 *
 * then the samples of the split are materialised: binary sources are copied (compacted) as uint8 HWC images;
 * a list is either decoded once into memory (small images: CIFAR-sized JPEGs) or kept as file names and
 * streamed through the decoding pool of prefetch.c (ImageNet-LT, Places-LT, iNat).
 *
 * get_batch maps each requested index i to out[k] = transform(image(i), key(seed, epoch, i)). The key is the
 * sample's own, never the batch position's, so a sample's augmentation is the same whatever batch, rank or
 * thread it lands in. Unreadable images under skip_bad_images are replaced by the next readable image of the
 * same class (cyclically in dataset order), still with key(i): a pure function of the data, so every rank
 * and every rerun makes the same replacement.
 */
#include "datasets/dataset_internal.h"

#include "core/check.h"
#include "core/rng.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DC_MEMORY_BUDGET_DEFAULT ((size_t)2 << 30) /* 2 GiB of decoded uint8 pixels */
#define DC_MEMORY_MAX_SIDE       64
#define DC_PROBE_IMAGES          8
#define DC_JOINED_PATH_MAX       (2 * DC_PATH_MAX + 2)

typedef enum { SRC_IDX, SRC_CIFAR10, SRC_CIFAR100, SRC_LIST } source_kind;

static const char *split_name(dc_split s) {
    return s == DC_SPLIT_TRAIN ? "train" : s == DC_SPLIT_VAL ? "val" : "test";
}

static const char *const fashion_mnist_names[10] = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

static int parse_source(const char *name, source_kind *kind, int *native_classes) {
    if (!strcmp(name, "fashion_mnist") || !strcmp(name, "mnist"))
        *kind = SRC_IDX, *native_classes = 10;
    else if (!strcmp(name, "cifar10"))
        *kind = SRC_CIFAR10, *native_classes = 10;
    else if (!strcmp(name, "cifar100"))
        *kind = SRC_CIFAR100, *native_classes = 100;
    else if (!strcmp(name, "list"))
        *kind = SRC_LIST, *native_classes = 0;
    else
        return DC_ERR("training_opt.dataset: unknown dataset '%s' (expected fashion_mnist, mnist, cifar10, "
                      "cifar100 or list)",
                      name);
    return DC_OK;
}

/* root/rel, or rel itself when it is absolute. */
static int join_path(const char *root, const char *rel, char *out, size_t cap) {
    int len;
    if (rel[0] == '/' || root[0] == '\0')
        len = snprintf(out, cap, "%s", rel);
    else {
        size_t rl = strlen(root);
        len = snprintf(out, cap, "%s%s%s", root, (rl && root[rl - 1] == '/') ? "" : "/", rel);
    }
    if (len < 0 || (size_t)len >= cap) return DC_ERR("path too long: %s/%s", root, rel);
    return DC_OK;
}

/* data_root/name, or data_root/name.gz. Existence decides (F_OK): a file that exists but cannot be read is
 * returned, so that opening it reports the real reason (permission denied) instead of "not found". */
static int find_data_file(const char *root, const char *name, char *out, size_t cap) {
    DC_TRY(join_path(root, name, out, cap));
    if (access(out, F_OK) == 0) return DC_OK;
    size_t l = strlen(out);
    if (l + 4 >= cap) return DC_ERR("path too long: %s.gz", out);
    memcpy(out + l, ".gz", 4);
    if (access(out, F_OK) == 0) return DC_OK;
    out[l] = '\0';
    return DC_ERR("%s: not found (nor %s.gz) in training_opt.data_root = %s", out, name, root);
}

/* A list or class-names file named by config key `key`: absolute as is; relative first under data_root (the
 * CIFAR-10 JPEG folder keeps its lists there), then from the current directory (the reference's presets
 * name data/ImageNet_LT/ImageNet_LT_train.txt relative to where the program runs). */
static int resolve_list_path(const char *root, const char *rel, const char *key, char *out, size_t cap) {
    if (rel[0] == '/') return join_path("", rel, out, cap);
    DC_TRY(join_path(root, rel, out, cap));
    if (access(out, F_OK) == 0) return DC_OK;
    if (access(rel, F_OK) == 0) return join_path("", rel, out, cap);
    return DC_ERR("training_opt.%s: %s not found (looked in training_opt.data_root = %s and in the current "
                  "directory)",
                  key, rel, root);
}

int dc_dataset_has_split(const dc_training_opt *opt, dc_split split) {
    if (!opt) return 0;
    int is_list = !strcmp(opt->dataset, "list");
    switch (split) {
    case DC_SPLIT_TRAIN:
        return is_list ? opt->train_list[0] != '\0' : 1;
    case DC_SPLIT_VAL:
        return (is_list && opt->val_list[0] != '\0') || opt->val_per_class > 0;
    case DC_SPLIT_TEST:
        return is_list ? opt->test_list[0] != '\0' : 1;
    }
    return 0;
}

/* ---- decoding files (list datasets) ----------------------------------------------------------------------
 */

void dc_decode_buf_free(dc_decode_buf *b) {
    if (!b) return;
    free(b->file);
    free(b->img.pix);
    dc_free_aligned(b->scratch);
    memset(b, 0, sizeof *b);
}

/* Reads sample i's file into b->file; `what` receives "path (list:line)" for messages. */
static int read_sample_file(const dc_dataset *ds, int64_t i, dc_decode_buf *b, char *what, size_t what_cap,
                            size_t *size_out) {
    char path[DC_JOINED_PATH_MAX];
    DC_TRY(join_path(ds->data_root, dc_list_file_path(&ds->list, i), path, sizeof path));
    snprintf(what, what_cap, "%s (%s:%lld)", path, ds->list.source, (long long)ds->list.line[i]);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return DC_ERR("%s: cannot open: %s", what, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return DC_ERR("%s: not a regular file", what);
    }
    size_t size = (size_t)st.st_size;
    if (size == 0) {
        close(fd);
        return DC_ERR("%s: empty file", what);
    }
    if (size > b->file_cap) {
        uint8_t *grown = realloc(b->file, size);
        if (!grown) {
            close(fd);
            return DC_ERR("%s: out of memory reading %zu bytes", what, size);
        }
        b->file = grown;
        b->file_cap = size;
    }
    size_t got = 0;
    while (got < size) {
        ssize_t r = read(fd, b->file + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != size) return DC_ERR("%s: read %zu of %zu bytes", what, got, size);
    *size_out = size;
    return DC_OK;
}

int dc_dataset_decode_file(const dc_dataset *ds, int64_t i, int min_side, dc_decode_buf *b) {
    char what[DC_JOINED_PATH_MAX + DC_PATH_MAX + 32];
    size_t size = 0;
    DC_TRY(read_sample_file(ds, i, b, what, sizeof what, &size));
    return dc_jpeg_decode(b->file, size, what, min_side, ds->channels, &b->img);
}

void dc_dataset_mark_bad(dc_dataset *ds, int64_t j) {
    if (atomic_exchange(&ds->bad[j], 1) == 0) {
        atomic_fetch_add(&ds->bad_count, 1);
        dc_log("warning: skipping an unreadable image (training_opt.skip_bad_images), replaced by the next "
               "readable image of class %d: %s\n",
               ds->labels[j], dc_last_error());
    }
}

int dc_dataset_stream_sample(dc_dataset *ds, int64_t i, int augment, uint64_t seed, int epoch, float *out,
                             dc_decode_buf *b) {
    const uint64_t key = dc_rng_key(seed, DC_RNG_AUGMENT, (uint64_t)epoch, (uint64_t)i);
    const int c = ds->labels[i];
    const int64_t *members = ds->class_members + ds->class_start[c];
    const int64_t n_c = ds->class_start[c + 1] - ds->class_start[c];
    const int64_t p = ds->position_in_class[i];
    for (int64_t t = 0; t < n_c; t++) {
        int64_t j = members[(p + t) % n_c];
        if (atomic_load(&ds->bad[j])) continue;
        /* fused decode + transform: decodes only the crop box (plus a margin), bit-identical to decoding
         * the whole image and transforming it */
        char what[DC_JOINED_PATH_MAX + DC_PATH_MAX + 32];
        size_t size = 0;
        if (read_sample_file(ds, j, b, what, sizeof what, &size) == DC_OK &&
            dc_jpeg_decode_transform(b->file, size, what, &ds->transform, augment, key, &b->img, &b->scratch,
                                     &b->scratch_cap, out) == DC_OK)
            return DC_OK;
        if (!ds->skip_bad_images) return DC_FAIL;
        dc_dataset_mark_bad(ds, j);
    }
    return DC_ERR("%s: every image of class %d (%lld of them) is unreadable, nothing can replace sample %lld",
                  ds->list.source, c, (long long)n_c, (long long)i);
}

/* ---- in-memory storage --------------------------------------------------------------------------------- */

static int store_binary(dc_dataset *ds, const dc_raw_images *raw, const int64_t *pick) {
    const size_t per = (size_t)raw->w * raw->h * raw->c;
    ds->pix = dc_malloc(per * (size_t)ds->n);
    ds->pix_offset = dc_calloc((size_t)ds->n, sizeof(int64_t));
    ds->img_w = dc_calloc((size_t)ds->n, sizeof(int32_t));
    ds->img_h = dc_calloc((size_t)ds->n, sizeof(int32_t));
    if (!ds->pix || !ds->pix_offset || !ds->img_w || !ds->img_h) return DC_FAIL;
    for (int64_t k = 0; k < ds->n; k++) {
        memcpy(ds->pix + (size_t)k * per, raw->pix + (size_t)pick[k] * per, per);
        ds->pix_offset[k] = (int64_t)((size_t)k * per);
        ds->img_w[k] = raw->w;
        ds->img_h[k] = raw->h;
    }
    ds->img_c = raw->c;
    ds->max_w = raw->w;
    ds->max_h = raw->h;
    ds->in_memory = 1;
    return DC_OK;
}

/* Decodes every image of a list dataset once, in parallel, and packs them back to back. */
static int decode_list_into_memory(dc_dataset *ds) {
    const int64_t n = ds->n;
    const int threads = omp_get_max_threads();
    uint8_t **each = dc_calloc((size_t)n, sizeof *each);
    dc_decode_buf *bufs = dc_calloc((size_t)threads, sizeof *bufs);
    ds->pix_offset = dc_calloc((size_t)n, sizeof(int64_t));
    ds->img_w = dc_calloc((size_t)n, sizeof(int32_t));
    ds->img_h = dc_calloc((size_t)n, sizeof(int32_t));
    int rc = DC_FAIL;
    if (!each || !bufs || !ds->pix_offset || !ds->img_w || !ds->img_h) goto done;

    int64_t first_fail = n; /* lowest failing index: the reported error does not depend on thread timing */
    char first_msg[1024] = "";
#pragma omp parallel num_threads(threads)
    {
        dc_decode_buf *b = &bufs[omp_get_thread_num()];
#pragma omp for schedule(dynamic, 64)
        for (int64_t i = 0; i < n; i++) {
            int fatal = 0;
            if (dc_dataset_decode_file(ds, i, 0, b) == DC_OK) {
                size_t bytes = (size_t)b->img.w * b->img.h * b->img.c;
                each[i] = malloc(bytes ? bytes : 1);
                if (each[i]) {
                    memcpy(each[i], b->img.pix, bytes);
                    ds->img_w[i] = b->img.w;
                    ds->img_h[i] = b->img.h;
                } else {
                    DC_ERR("out of memory holding image %lld of %s in memory", (long long)i, ds->list.source);
                    fatal = 1;
                }
            } else if (ds->skip_bad_images) {
                dc_dataset_mark_bad(ds, i); /* stays 0 x 0; get_batch substitutes a readable image */
            } else {
                fatal = 1;
            }
            if (fatal) {
#pragma omp critical(dc_dataset_first_fail)
                if (i < first_fail) {
                    first_fail = i;
                    snprintf(first_msg, sizeof first_msg, "%s", dc_last_error());
                }
            }
        }
    }
    if (first_fail < n) {
        DC_ERR("%s", first_msg);
        goto done;
    }
    size_t total = 0;
    for (int64_t i = 0; i < n; i++) {
        ds->pix_offset[i] = (int64_t)total;
        total += (size_t)ds->img_w[i] * ds->img_h[i] * ds->channels;
        if (ds->img_w[i] > ds->max_w) ds->max_w = ds->img_w[i];
        if (ds->img_h[i] > ds->max_h) ds->max_h = ds->img_h[i];
    }
    ds->pix = dc_malloc(total ? total : 1);
    if (!ds->pix) goto done;
    for (int64_t i = 0; i < n; i++)
        if (each[i])
            memcpy(ds->pix + ds->pix_offset[i], each[i], (size_t)ds->img_w[i] * ds->img_h[i] * ds->channels);
    ds->img_c = ds->channels;
    ds->in_memory = 1;
    rc = DC_OK;
done:
    if (each)
        for (int64_t i = 0; i < n; i++) free(each[i]);
    free(each);
    if (bufs)
        for (int t = 0; t < threads; t++) dc_decode_buf_free(&bufs[t]);
    free(bufs);
    return rc;
}

/* Sample i, or the next readable sample of its class (in-memory datasets know every bad image at open). */
static int64_t resolve_in_memory(const dc_dataset *ds, int64_t i) {
    if (!atomic_load(&ds->bad[i])) return i;
    const int c = ds->labels[i];
    const int64_t *members = ds->class_members + ds->class_start[c];
    const int64_t n_c = ds->class_start[c + 1] - ds->class_start[c];
    for (int64_t t = 1; t < n_c; t++) {
        int64_t j = members[(ds->position_in_class[i] + t) % n_c];
        if (!atomic_load(&ds->bad[j])) return j;
    }
    return -1;
}

static int ensure_scratch(dc_dataset *ds, int threads) {
    if (ds->n_scratch >= threads) return DC_OK;
    for (int t = 0; t < ds->n_scratch; t++) dc_free_aligned(ds->scratch[t]);
    free(ds->scratch);
    ds->n_scratch = 0;
    ds->scratch = dc_calloc((size_t)threads, sizeof(void *));
    if (!ds->scratch) return DC_FAIL;
    dc_image biggest = {ds->max_w, ds->max_h, ds->img_c, NULL, 0};
    ds->scratch_bytes = dc_transform_scratch_bytes(&ds->transform, &biggest);
    for (int t = 0; t < threads; t++) {
        ds->scratch[t] = dc_malloc_aligned(ds->scratch_bytes ? ds->scratch_bytes : 64);
        if (!ds->scratch[t]) {
            ds->n_scratch = t;
            return DC_FAIL;
        }
    }
    ds->n_scratch = threads;
    return DC_OK;
}

/* ---- opening a split ---------------------------------------------------------------------------------- */

/* What the derived splits did, for the description line. */
typedef struct {
    int64_t n_source;
    int lt_applied, lt_short_classes;
    int carved, carve_reduced;
    int64_t carve_lost_per_class; /* train: val_per_class */
    int carve_remainder;          /* val drawn from the samples the LT subset left out */
    int carve_shifted_classes;    /* ... of which this many classes also gave LT training samples */
    size_t memory_bytes;
} open_notes;

/* Val from the LT remainder (see dc_dataset_open_ex, step 3). src_labels [n_src]; sel [n_sel] the LT subset
 * (ascending source indices). *out (malloc'd, ascending) receives the val indices (want_val) or the train
 * indices, as source indices; *n_out their count. Deterministic: class c's choices come from
 * dc_rng_key(seed, DC_RNG_SPLIT, c) (remainder) and dc_rng_key(seed, DC_RNG_SPLIT, C + c) (LT samples). */
static int carve_from_remainder(const int32_t *src_labels, int64_t n_src, const int64_t *sel, int64_t n_sel,
                                int C, int per_class, uint64_t seed, int want_val, int64_t **out,
                                int64_t *n_out, open_notes *notes) {
    uint8_t *role = dc_calloc((size_t)n_src, 1); /* 0 unused, 1 LT train, 2 val */
    int64_t *members = dc_calloc((size_t)n_src + 1, sizeof(int64_t));
    int64_t *start = dc_calloc((size_t)C + 1, sizeof(int64_t)),
            *fill = dc_calloc((size_t)C + 1, sizeof(int64_t));
    int rc = role && members && start && fill ? DC_OK : DC_FAIL;
    if (rc == DC_OK) {
        for (int64_t k = 0; k < n_sel; k++) role[sel[k]] = 1;
        for (int pass = 0; pass < 2 && rc == DC_OK; pass++) {
            /* pass 0: the remainder (role 0); pass 1: the LT samples (role 1) of classes still short */
            memset(start, 0, sizeof(int64_t) * ((size_t)C + 1));
            for (int64_t i = 0; i < n_src; i++)
                if (role[i] == pass) start[src_labels[i] + 1]++;
            for (int c = 0; c < C; c++) start[c + 1] += start[c];
            memcpy(fill, start, sizeof(int64_t) * (size_t)C);
            for (int64_t i = 0; i < n_src; i++)
                if (role[i] == pass) members[fill[src_labels[i]]++] = i;
            for (int c = 0; c < C; c++) {
                int64_t have = 0;
                if (pass == 1)
                    for (int64_t i = 0; i < n_src; i++) have += (role[i] == 2 && src_labels[i] == c);
                int64_t need = per_class - have, n_c = start[c + 1] - start[c];
                if (need <= 0) continue;
                if (pass == 1) {
                    if (need > n_c - 1) need = n_c - 1; /* keep one training sample */
                    if (need > 0) notes->carve_shifted_classes++;
                    if (need < per_class - have) notes->carve_reduced++;
                }
                if (need > n_c) need = n_c;
                dc_rng r = dc_rng_make(dc_rng_key(seed, DC_RNG_SPLIT, (uint64_t)(pass * C + c), 0));
                int64_t *m = members + start[c];
                for (int64_t k = 0; k < need; k++) { /* partial Fisher-Yates */
                    int64_t j = k + (int64_t)dc_rng_below(&r, (uint64_t)(n_c - k));
                    int64_t t = m[k];
                    m[k] = m[j];
                    m[j] = t;
                    role[m[k]] = 2;
                }
            }
        }
    }
    if (rc == DC_OK) {
        *out = dc_calloc((size_t)n_src + 1, sizeof(int64_t));
        if (!*out) rc = DC_FAIL;
    }
    if (rc == DC_OK) {
        int64_t n = 0;
        for (int64_t i = 0; i < n_src; i++)
            if (role[i] == (want_val ? 2 : 1)) (*out)[n++] = i;
        *n_out = n;
        notes->carve_remainder = 1;
    }
    free(role);
    free(members);
    free(start);
    free(fill);
    return rc;
}

static int load_class_names(dc_dataset *ds, const char *path) {
    int count;
    char **names;
    DC_TRY(dc_class_names_read(path, &count, &names));
    if (count != ds->num_classes) {
        free(names);
        return DC_ERR("%s: %d class names, but the dataset has %d classes (training_opt.num_classes)", path,
                      count, ds->num_classes);
    }
    ds->class_names = names;
    return DC_OK;
}

static int numbered_class_names(dc_dataset *ds, const char *const *fixed) {
    size_t bytes = sizeof(char *) * (size_t)ds->num_classes;
    size_t text = 0;
    for (int c = 0; c < ds->num_classes; c++) text += fixed ? strlen(fixed[c]) + 1 : 12;
    char **arr = dc_malloc(bytes + text);
    if (!arr) return DC_FAIL;
    char *s = (char *)arr + bytes;
    for (int c = 0; c < ds->num_classes; c++) {
        arr[c] = s;
        s += fixed ? (size_t)sprintf(s, "%s", fixed[c]) + 1 : (size_t)sprintf(s, "%d", c) + 1;
    }
    ds->class_names = arr;
    return DC_OK;
}

static int build_class_index(dc_dataset *ds) {
    const int C = ds->num_classes;
    ds->class_counts = dc_calloc((size_t)C, sizeof(int64_t));
    ds->class_start = dc_calloc((size_t)C + 1, sizeof(int64_t));
    ds->class_members = dc_calloc((size_t)ds->n, sizeof(int64_t));
    ds->position_in_class = dc_calloc((size_t)ds->n, sizeof(int64_t));
    int64_t *fill = dc_calloc((size_t)C, sizeof(int64_t));
    if (!ds->class_counts || !ds->class_start || !ds->class_members || !ds->position_in_class || !fill) {
        free(fill);
        return DC_FAIL;
    }
    for (int64_t i = 0; i < ds->n; i++) ds->class_counts[ds->labels[i]]++;
    for (int c = 0; c < C; c++) ds->class_start[c + 1] = ds->class_start[c] + ds->class_counts[c];
    for (int64_t i = 0; i < ds->n; i++) {
        int c = ds->labels[i];
        ds->position_in_class[i] = fill[c];
        ds->class_members[ds->class_start[c] + fill[c]++] = i;
    }
    free(fill);
    return DC_OK;
}

static void describe(dc_dataset *ds, const dc_training_opt *opt, const open_notes *nt) {
    int64_t mx = 0, mn = INT64_MAX;
    int empty = 0;
    for (int c = 0; c < ds->num_classes; c++) {
        int64_t k = ds->class_counts[c];
        if (k > mx) mx = k;
        if (k < mn) mn = k;
        empty += k == 0;
    }
    char *s = ds->description;
    size_t cap = sizeof ds->description, len = 0;
#define ADD(...)                                                                                             \
    do {                                                                                                     \
        if (len < cap) {                                                                                     \
            int w_ = snprintf(s + len, cap - len, __VA_ARGS__);                                              \
            if (w_ > 0) len += (size_t)w_;                                                                   \
        }                                                                                                    \
    } while (0)
    ADD("%s %s: %lld images, %d classes, max/min %lld/%lld", ds->name, split_name(ds->split),
        (long long)ds->n, ds->num_classes, (long long)mx, (long long)mn);
    if (mn > 0)
        ADD(" (imbalance %.1f)", (double)mx / (double)mn);
    else
        ADD(" (imbalance inf: %d class(es) without samples)", empty);
    if (nt->lt_applied) {
        if (opt->imb_type == DC_IMB_EXP)
            ADD("; exp long-tailed subset r=%g of %lld (first n_c of each class)", opt->imb_factor,
                (long long)nt->n_source);
        else
            ADD("; step long-tailed subset r=%g, minority fraction %g, of %lld", opt->imb_factor,
                opt->step_minor_frac, (long long)nt->n_source);
        if (nt->lt_short_classes)
            ADD(" (%d class(es) had fewer samples than the profile)", nt->lt_short_classes);
    }
    if (nt->carved && nt->carve_remainder && ds->split == DC_SPLIT_TRAIN) {
        ADD("; val drawn from the samples the LT subset left out");
        if (nt->carve_shifted_classes)
            ADD(" (%d class(es) without enough left-out samples gave LT training samples too)",
                nt->carve_shifted_classes);
    } else if (nt->carved && ds->split == DC_SPLIT_TRAIN) {
        ADD("; val carved from train: class counts shifted by %d per class", opt->val_per_class);
        if (nt->carve_reduced)
            ADD(" (%d class(es) with <= %d samples gave n_c - 1)", nt->carve_reduced, opt->val_per_class);
    }
    if (nt->carved && nt->carve_remainder && ds->split == DC_SPLIT_VAL) {
        ADD("; balanced, %d per class from the samples the LT subset left out (seed %llu)",
            opt->val_per_class, (unsigned long long)opt->seed);
    } else if (nt->carved && ds->split == DC_SPLIT_VAL) {
        ADD("; carved from the training set: %d per class (seed %llu)", opt->val_per_class,
            (unsigned long long)opt->seed);
        if (nt->carve_reduced)
            ADD(" (%d small class(es) gave fewer, keeping one training sample)", nt->carve_reduced);
    }
    if (ds->in_memory)
        ADD("; in memory (uint8, %.1f MiB)", (double)nt->memory_bytes / (1024.0 * 1024.0));
    else
        ADD("; streaming from disk (%d decode threads)", ds->decode_threads);
    ADD("; output %dx%dx%d", ds->channels, ds->image_size, ds->image_size);
    if (atomic_load(&ds->bad_count))
        ADD("; %lld unreadable images replaced", (long long)atomic_load(&ds->bad_count));
#undef ADD
}

/* Looks at a few images of a list to pick the storage and, if needed, the output size. */
static int probe_list(dc_dataset *ds, int *max_side, double *mean_bytes, int *uniform_side) {
    dc_decode_buf b = {0};
    int ok = 0;
    double bytes = 0;
    *max_side = 0;
    *uniform_side = -1;
    char first_err[1024] = "";
    int k_max = ds->n < DC_PROBE_IMAGES ? (int)ds->n : DC_PROBE_IMAGES;
    for (int k = 0; k < k_max; k++) {
        int64_t i = k_max > 1 ? (int64_t)k * (ds->n - 1) / (k_max - 1) : 0;
        if (dc_dataset_decode_file(ds, i, 0, &b) != DC_OK) {
            if (!first_err[0]) snprintf(first_err, sizeof first_err, "%s", dc_last_error());
            continue;
        }
        ok++;
        bytes += (double)b.img.w * b.img.h * b.img.c;
        int side = b.img.w > b.img.h ? b.img.w : b.img.h;
        if (side > *max_side) *max_side = side;
        if (b.img.w != b.img.h)
            *uniform_side = 0;
        else if (*uniform_side == -1)
            *uniform_side = b.img.w;
        else if (*uniform_side != b.img.w)
            *uniform_side = 0;
    }
    dc_decode_buf_free(&b);
    if (ok == 0)
        return DC_ERR("none of the %d images probed in %s could be read; the first: %s", k_max,
                      ds->list.source, first_err);
    *mean_bytes = bytes / ok;
    return DC_OK;
}

int dc_dataset_open(const dc_training_opt *opt, dc_split split, dc_dataset **out) {
    return dc_dataset_open_ex(opt, split, NULL, out);
}

int dc_dataset_open_ex(const dc_training_opt *opt, dc_split split, const dc_dataset_options *options,
                       dc_dataset **out) {
    if (!out) return DC_ERR("dc_dataset_open: NULL output");
    *out = NULL;
    if (!opt) return DC_ERR("dc_dataset_open: NULL options");
    if (split != DC_SPLIT_TRAIN && split != DC_SPLIT_VAL && split != DC_SPLIT_TEST)
        return DC_ERR("dc_dataset_open: unknown split %d", (int)split);
    dc_dataset_options defaults = {DC_STORAGE_AUTO, 0, 0};
    if (!options) options = &defaults;

    source_kind kind = SRC_LIST;
    int native_classes = 0;
    DC_TRY(parse_source(opt->dataset, &kind, &native_classes));
    if (opt->num_classes < 0)
        return DC_ERR("training_opt.num_classes: expected >= 0, got %d", opt->num_classes);
    if (opt->val_per_class < 0)
        return DC_ERR("training_opt.val_per_class: expected >= 0, got %d", opt->val_per_class);
    if (kind != SRC_LIST && opt->num_classes != 0 && opt->num_classes != native_classes)
        return DC_ERR("training_opt.num_classes: %s has %d classes, got %d", opt->dataset, native_classes,
                      opt->num_classes);
    if (opt->imb_type != DC_IMB_NONE && !(opt->imb_factor >= 1.0))
        return DC_ERR("training_opt.imb_factor: expected r = n_max / n_min >= 1, got %g", opt->imb_factor);

    /* Which source file(s) feed this split, and which derived steps apply. */
    const int has_val_list = kind == SRC_LIST && opt->val_list[0] != '\0';
    if (has_val_list && opt->val_per_class > 0)
        return DC_ERR(
            "training_opt.val_per_class: %d, but training_opt.val_list is also set (%s); use one way "
            "to get a validation split",
            opt->val_per_class, opt->val_list);
    const int carve = split != DC_SPLIT_TEST && opt->val_per_class > 0;
    if (split == DC_SPLIT_VAL && !carve && !has_val_list)
        return DC_ERR(
            "training_opt.val_per_class: dataset '%s' has no validation split; set val_per_class > 0 "
            "to carve a balanced one from the training set%s",
            opt->dataset, kind == SRC_LIST ? ", or set training_opt.val_list" : "");
    const int from_train = split == DC_SPLIT_TRAIN || (split == DC_SPLIT_VAL && carve);
    const int apply_lt = from_train && opt->imb_type != DC_IMB_NONE;

    char root[DC_PATH_MAX];
    if (opt->data_root[0])
        snprintf(root, sizeof root, "%s", opt->data_root);
    else if (!strcmp(opt->dataset, "fashion_mnist"))
        snprintf(root, sizeof root, "/usr/share/datasets/fashion-mnist");
    else
        return DC_ERR("training_opt.data_root: not set (the folder holding the %s files)", opt->dataset);

    dc_dataset *ds = dc_calloc(1, sizeof *ds);
    if (!ds) return DC_FAIL;
    snprintf(ds->name, sizeof ds->name, "%s", opt->dataset);
    snprintf(ds->data_root, sizeof ds->data_root, "%s", root);
    ds->split = split;
    ds->skip_bad_images = opt->skip_bad_images;
    atomic_init(&ds->bad_count, 0);

    open_notes notes = {0};
    dc_raw_images raw = {0};
    dc_list_file lf = {0};
    int64_t *sel = NULL, *tr = NULL, *va = NULL, *final_idx = NULL;
    int32_t *sel_labels = NULL;
    const int32_t *src_labels;
    int64_t n_src;
    char path[DC_JOINED_PATH_MAX];

    /* 1. the source, in file order */
    if (kind == SRC_IDX) {
        char images[DC_JOINED_PATH_MAX], labels[DC_JOINED_PATH_MAX];
        const char *prefix = from_train ? "train" : "t10k";
        char name[64];
        snprintf(name, sizeof name, "%s-images-idx3-ubyte", prefix);
        if (find_data_file(root, name, images, sizeof images) != DC_OK) goto fail;
        snprintf(name, sizeof name, "%s-labels-idx1-ubyte", prefix);
        if (find_data_file(root, name, labels, sizeof labels) != DC_OK) goto fail;
        if (dc_idx_load(images, labels, native_classes, &raw) != DC_OK) goto fail;
    } else if (kind == SRC_CIFAR10 || kind == SRC_CIFAR100) {
        char files[6][DC_JOINED_PATH_MAX];
        const char *ptrs[6];
        int nf = 0;
        if (kind == SRC_CIFAR10 && from_train)
            for (int b = 1; b <= 5; b++) {
                char name[32];
                snprintf(name, sizeof name, "data_batch_%d.bin", b);
                if (find_data_file(root, name, files[nf], sizeof files[nf]) != DC_OK) goto fail;
                nf++;
            }
        else if (find_data_file(root,
                                kind == SRC_CIFAR10 ? "test_batch.bin"
                                : from_train        ? "train.bin"
                                                    : "test.bin",
                                files[nf++], sizeof files[0]) != DC_OK)
            goto fail;
        for (int k = 0; k < nf; k++) ptrs[k] = files[k];
        if (dc_cifar_bin_load(ptrs, nf, kind == SRC_CIFAR100, &raw) != DC_OK) goto fail;
    }
    if (kind != SRC_LIST) {
        ds->num_classes = native_classes;
        src_labels = raw.labels;
        n_src = raw.n;
        /* 1 <-> 3 channel conversion is the transform's (grey replicated, colour to PIL luma). */
        ds->channels = opt->in_channels > 0 ? opt->in_channels : raw.c;
        if (ds->channels != 1 && ds->channels != 3) {
            DC_ERR("training_opt.in_channels: expected 1 or 3, got %d", ds->channels);
            goto fail;
        }
        ds->image_size = opt->image_size > 0 ? opt->image_size : raw.w;
    } else {
        const char *key = split == DC_SPLIT_TEST                    ? "test_list"
                          : (split == DC_SPLIT_VAL && has_val_list) ? "val_list"
                                                                    : "train_list";
        const char *rel = split == DC_SPLIT_TEST                    ? opt->test_list
                          : (split == DC_SPLIT_VAL && has_val_list) ? opt->val_list
                                                                    : opt->train_list;
        if (!rel[0]) {
            DC_ERR("training_opt.%s: not set (dataset 'list' needs one for the %s split)", key,
                   split_name(split));
            goto fail;
        }
        int nc = opt->num_classes;
        char names_path[DC_JOINED_PATH_MAX] = "";
        if (opt->class_names[0]) {
            if (resolve_list_path(root, opt->class_names, "class_names", names_path, sizeof names_path) !=
                DC_OK)
                goto fail;
            if (nc == 0) {
                int count;
                char **names;
                if (dc_class_names_read(names_path, &count, &names) != DC_OK) goto fail;
                free(names);
                nc = count;
            }
        }
        if (nc == 0 && !from_train && opt->train_list[0]) {
            /* All splits must agree on C: take it from the training list (max label + 1). */
            dc_list_file train_lf;
            if (resolve_list_path(root, opt->train_list, "train_list", path, sizeof path) != DC_OK) goto fail;
            if (dc_list_file_read(path, 0, &train_lf) != DC_OK) goto fail;
            nc = train_lf.num_classes;
            dc_list_file_free(&train_lf);
        }
        if (resolve_list_path(root, rel, key, path, sizeof path) != DC_OK) goto fail;
        if (dc_list_file_read(path, nc, &lf) != DC_OK) goto fail;
        ds->num_classes = lf.num_classes;
        src_labels = lf.labels;
        n_src = lf.n;
        ds->is_list = 1;
        ds->channels = opt->in_channels > 0 ? opt->in_channels : 3;
        if (ds->channels != 1 && ds->channels != 3) {
            DC_ERR("training_opt.in_channels: JPEG lists give 1 or 3 channels, got %d", ds->channels);
            goto fail;
        }
        ds->image_size = opt->image_size; /* 0: decided by the probe below */
        if (names_path[0] && load_class_names(ds, names_path) != DC_OK) goto fail;
    }
    notes.n_source = n_src;

    /* 2. the long-tailed subset: first n_c of each class */
    sel = dc_calloc((size_t)n_src, sizeof(int64_t));
    if (!sel) goto fail;
    int64_t n_sel = n_src;
    if (apply_lt) {
        int64_t *counts = dc_calloc((size_t)ds->num_classes, sizeof(int64_t));
        int64_t *keep = dc_calloc((size_t)ds->num_classes, sizeof(int64_t));
        int rc = counts && keep ? DC_OK : DC_FAIL;
        if (rc == DC_OK) {
            for (int64_t i = 0; i < n_src; i++) counts[src_labels[i]]++;
            int64_t n_max = 0;
            for (int c = 0; c < ds->num_classes; c++)
                if (counts[c] > n_max) n_max = counts[c];
            rc = dc_lt_profile(opt->imb_type, ds->num_classes, n_max, opt->imb_factor, opt->step_minor_frac,
                               keep);
            if (rc == DC_OK)
                rc = dc_lt_select(src_labels, n_src, ds->num_classes, keep, sel, &n_sel,
                                  &notes.lt_short_classes);
        }
        free(counts);
        free(keep);
        if (rc != DC_OK) goto fail;
        notes.lt_applied = 1;
    } else {
        for (int64_t i = 0; i < n_src; i++) sel[i] = i;
    }

    /* 3. the carved validation split */
    final_idx = sel;
    ds->n = n_sel;
    if (carve && from_train && notes.lt_applied) {
        /* A long-tailed subset of a balanced source leaves samples unused: the balanced val split is drawn
         * from that remainder first, so the LT training counts stay exactly the protocol's. Only a class
         * whose remainder is too small (the head class keeps all its samples) gives the rest from its LT
         * samples, keeping at least one for training. */
        if (carve_from_remainder(src_labels, n_src, sel, n_sel, ds->num_classes, opt->val_per_class,
                                 opt->seed, split == DC_SPLIT_VAL, &final_idx, &ds->n, &notes) != DC_OK)
            goto fail;
        notes.carved = 1;
    } else if (carve && from_train) {
        sel_labels = dc_calloc((size_t)n_sel, sizeof(int32_t));
        tr = dc_calloc((size_t)n_sel, sizeof(int64_t));
        va = dc_calloc((size_t)n_sel, sizeof(int64_t));
        final_idx = dc_calloc((size_t)n_sel, sizeof(int64_t));
        if (!sel_labels || !tr || !va || !final_idx) goto fail;
        for (int64_t k = 0; k < n_sel; k++) sel_labels[k] = src_labels[sel[k]];
        int64_t n_tr, n_va;
        if (dc_carve_val(sel_labels, n_sel, ds->num_classes, opt->val_per_class, opt->seed, tr, &n_tr, va,
                         &n_va, &notes.carve_reduced) != DC_OK)
            goto fail;
        const int64_t *pick = split == DC_SPLIT_VAL ? va : tr;
        ds->n = split == DC_SPLIT_VAL ? n_va : n_tr;
        for (int64_t k = 0; k < ds->n; k++) final_idx[k] = sel[pick[k]];
        notes.carved = 1;
    }
    if (ds->n == 0) {
        DC_ERR("%s %s split is empty", opt->dataset, split_name(split));
        goto fail;
    }

    /* 4. labels, class index, and a class with no training sample is an error (the samplers need it) */
    ds->labels = dc_calloc((size_t)ds->n, sizeof(int32_t));
    ds->source_index = dc_calloc((size_t)ds->n, sizeof(int64_t));
    ds->bad = dc_calloc((size_t)ds->n, sizeof(atomic_uchar));
    if (!ds->labels || !ds->source_index || !ds->bad) goto fail;
    for (int64_t k = 0; k < ds->n; k++) {
        ds->labels[k] = src_labels[final_idx[k]];
        ds->source_index[k] = final_idx[k];
    }
    if (build_class_index(ds) != DC_OK) goto fail;
    if (split == DC_SPLIT_TRAIN)
        for (int c = 0; c < ds->num_classes; c++)
            if (ds->class_counts[c] == 0) {
                DC_ERR("%s: class %d has no training sample (of %d classes); the samplers and the "
                       "many/medium/few "
                       "split need every class: fix the list or training_opt.num_classes",
                       kind == SRC_LIST ? lf.source : opt->dataset, c, ds->num_classes);
                goto fail;
            }

    /* 5. the pixels */
    if (kind != SRC_LIST) {
        if (store_binary(ds, &raw, final_idx) != DC_OK) goto fail;
        notes.memory_bytes = (size_t)ds->n * raw.w * raw.h * raw.c;
        dc_raw_images_free(&raw);
    } else {
        if (dc_list_file_subset(&lf, final_idx, ds->n, &ds->list) != DC_OK) goto fail;
        dc_list_file_free(&lf);
        dc_storage storage = options->storage;
        if (storage == DC_STORAGE_AUTO || ds->image_size == 0) {
            int max_side, uniform_side;
            double mean_bytes = 0;
            if (probe_list(ds, &max_side, &mean_bytes, &uniform_side) != DC_OK) goto fail;
            if (ds->image_size == 0) {
                if (uniform_side <= 0) {
                    DC_ERR(
                        "training_opt.image_size: not set, and the images of %s differ in size (or are not "
                        "square); set the network input size",
                        ds->list.source);
                    goto fail;
                }
                ds->image_size = uniform_side;
            }
            if (storage == DC_STORAGE_AUTO) {
                size_t budget = options->memory_budget ? options->memory_budget : DC_MEMORY_BUDGET_DEFAULT;
                int side_limit = options->memory_max_side ? options->memory_max_side : DC_MEMORY_MAX_SIDE;
                double estimate = mean_bytes * (double)ds->n;
                storage = (max_side <= side_limit && estimate <= (double)budget) ? DC_STORAGE_MEMORY
                                                                                 : DC_STORAGE_STREAM;
            }
        }
        if (storage == DC_STORAGE_MEMORY) {
            if (decode_list_into_memory(ds) != DC_OK) goto fail;
            for (int64_t i = 0; i < ds->n; i++)
                notes.memory_bytes += (size_t)ds->img_w[i] * ds->img_h[i] * ds->img_c;
            for (int64_t i = 0; i < ds->n; i++)
                if (atomic_load(&ds->bad[i]) && resolve_in_memory(ds, i) < 0) {
                    DC_ERR("%s: every image of class %d is unreadable (training_opt.skip_bad_images cannot "
                           "replace them)",
                           ds->list.source, ds->labels[i]);
                    goto fail;
                }
        } else {
            ds->decode_threads = opt->decode_threads > 0 ? opt->decode_threads : omp_get_max_threads() / 2;
            if (ds->decode_threads < 1) ds->decode_threads = 1;
            if (opt->decode_threads <= 0 && ds->decode_threads > 8) ds->decode_threads = 8;
        }
    }

    /* 6. the transform */
    if (ds->channels > DC_MAX_CHANNELS) {
        DC_ERR("training_opt.in_channels: at most %d, got %d", DC_MAX_CHANNELS, ds->channels);
        goto fail;
    }
    for (int c = 0; c < ds->channels; c++)
        if (!(opt->std[c] > 0.0f) || !isfinite(opt->mean[c])) {
            DC_ERR("training_opt.std: channel %d has std %g, mean %g (expected std > 0)", c,
                   (double)opt->std[c], (double)opt->mean[c]);
            goto fail;
        }
    if (ds->image_size < 1) {
        DC_ERR("training_opt.image_size: expected >= 1, got %d", ds->image_size);
        goto fail;
    }
    dc_transform_from_config(opt, &ds->transform);
    ds->transform.out_size = ds->image_size;
    ds->transform.out_channels = ds->channels;

    /* 7. class names and the description */
    if (!ds->class_names) {
        char names_path[DC_JOINED_PATH_MAX];
        const char *meta = kind == SRC_CIFAR10    ? "batches.meta.txt"
                           : kind == SRC_CIFAR100 ? "fine_label_names.txt"
                                                  : NULL;
        if (meta && join_path(root, meta, names_path, sizeof names_path) == DC_OK &&
            access(names_path, R_OK) == 0) {
            if (load_class_names(ds, names_path) != DC_OK) goto fail;
        } else if (numbered_class_names(ds, !strcmp(opt->dataset, "fashion_mnist") ? fashion_mnist_names
                                                                                   : NULL) != DC_OK)
            goto fail;
    }
    describe(ds, opt, &notes);

    if (final_idx != sel) free(final_idx);
    free(sel);
    free(tr);
    free(va);
    free(sel_labels);
    *out = ds;
    return DC_OK;

fail:
    if (final_idx != sel) free(final_idx);
    free(sel);
    free(tr);
    free(va);
    free(sel_labels);
    dc_raw_images_free(&raw);
    dc_list_file_free(&lf);
    dc_dataset_free(ds);
    return DC_FAIL;
}

void dc_dataset_free(dc_dataset *ds) {
    if (!ds) return;
    dc_prefetch_free(ds->prefetch);
    free(ds->labels);
    free(ds->class_counts);
    free(ds->source_index);
    free(ds->class_start);
    free(ds->class_members);
    free(ds->position_in_class);
    free(ds->class_names);
    free(ds->pix);
    free(ds->pix_offset);
    free(ds->img_w);
    free(ds->img_h);
    for (int t = 0; t < ds->n_scratch; t++) dc_free_aligned(ds->scratch[t]);
    free(ds->scratch);
    dc_list_file_free(&ds->list);
    free(ds->bad);
    free(ds);
}

/* ---- accessors ---------------------------------------------------------------------------------------- */

int64_t dc_dataset_size(const dc_dataset *ds) {
    return ds->n;
}
int dc_dataset_num_classes(const dc_dataset *ds) {
    return ds->num_classes;
}
const int32_t *dc_dataset_labels(const dc_dataset *ds) {
    return ds->labels;
}
const int64_t *dc_dataset_class_counts(const dc_dataset *ds) {
    return ds->class_counts;
}
int dc_dataset_channels(const dc_dataset *ds) {
    return ds->channels;
}
int dc_dataset_image_size(const dc_dataset *ds) {
    return ds->image_size;
}
int dc_dataset_is_streaming(const dc_dataset *ds) {
    return !ds->in_memory;
}
const int64_t *dc_dataset_source_indices(const dc_dataset *ds) {
    return ds->source_index;
}
const char *dc_dataset_class_name(const dc_dataset *ds, int c) {
    if (c < 0 || c >= ds->num_classes) return "?";
    return ds->class_names[c];
}
const char *dc_dataset_describe(const dc_dataset *ds) {
    return ds->description;
}
int64_t dc_dataset_bad_count(const dc_dataset *ds) {
    return (int64_t)atomic_load(&ds->bad_count);
}

/* ---- batches --------------------------------------------------------------------------------------------
 */

static int check_request(const dc_dataset *ds, const int64_t *indices, int n, const char *fn) {
    if (!ds) return DC_ERR("%s: NULL dataset", fn);
    if (n < 0) return DC_ERR("%s: negative batch size %d", fn, n);
    if (n > 0 && !indices) return DC_ERR("%s: NULL indices", fn);
    for (int k = 0; k < n; k++)
        if (indices[k] < 0 || indices[k] >= ds->n)
            return DC_ERR("%s: index %lld (batch position %d) out of range [0, %lld) of %s %s", fn,
                          (long long)indices[k], k, (long long)ds->n, ds->name, split_name(ds->split));
    return DC_OK;
}

int dc_dataset_get_batch(dc_dataset *ds, const int64_t *indices, int n, int augment, uint64_t seed, int epoch,
                         float *out, int32_t *labels) {
    DC_TRY(check_request(ds, indices, n, "dc_dataset_get_batch"));
    if (n == 0) return DC_OK;
    if (!out) return DC_ERR("dc_dataset_get_batch: NULL output");
    if (labels)
        for (int k = 0; k < n; k++) labels[k] = ds->labels[indices[k]];
    const size_t per = (size_t)ds->channels * ds->image_size * ds->image_size;

    if (!ds->in_memory) {
        if (!ds->prefetch) DC_TRY(dc_prefetch_create(ds, ds->decode_threads, &ds->prefetch));
        return dc_prefetch_collect(ds->prefetch, indices, n, augment, seed, epoch, out);
    }

    const int threads = omp_in_parallel() ? 1 : omp_get_max_threads();
    DC_TRY(ensure_scratch(ds, threads));
    int first_fail = n; /* lowest failing batch position, so the message does not depend on timing */
    char first_msg[1024] = "";
#pragma omp parallel for num_threads(threads) schedule(static)
    for (int k = 0; k < n; k++) {
        int64_t i = indices[k];
        int64_t j = resolve_in_memory(ds, i);
        int rc;
        if (j < 0) {
            rc = DC_ERR("%s %s: sample %lld is unreadable and its class has no readable image", ds->name,
                        split_name(ds->split), (long long)i);
        } else {
            dc_image img = {ds->img_w[j], ds->img_h[j], ds->img_c, ds->pix + ds->pix_offset[j], 0};
            uint64_t key = dc_rng_key(seed, DC_RNG_AUGMENT, (uint64_t)epoch, (uint64_t)i);
            rc = dc_transform_apply(&ds->transform, &img, augment, key, out + (size_t)k * per,
                                    ds->scratch[omp_get_thread_num()]);
        }
        if (rc != DC_OK) {
#pragma omp critical(dc_dataset_batch_fail)
            if (k < first_fail) {
                first_fail = k;
                snprintf(first_msg, sizeof first_msg, "%s", dc_last_error());
            }
        }
    }
    if (first_fail < n) return DC_ERR("%s", first_msg);
    return DC_OK;
}

int dc_dataset_prefetch(dc_dataset *ds, const int64_t *indices, int n, int augment, uint64_t seed,
                        int epoch) {
    DC_TRY(check_request(ds, indices, n, "dc_dataset_prefetch"));
    if (ds->in_memory || n == 0) return DC_OK;
    if (!ds->prefetch) DC_TRY(dc_prefetch_create(ds, ds->decode_threads, &ds->prefetch));
    return dc_prefetch_submit(ds->prefetch, indices, n, augment, seed, epoch);
}
