/*
 * dataset.h: the datasets the trainer reads, behind one interface.
 *
 *   dc_dataset_open(opt, split)  -> labels, class counts, image geometry, a one-line description
 *   dc_dataset_get_batch(...)    -> NCHW floats, normalised, optionally augmented, for any list of indices
 *
 * Sources (training_opt.dataset):
 *   fashion_mnist, mnist  IDX files (raw or .gz) in data_root: train-images-idx3-ubyte,
 * t10k-labels-idx1-ubyte.. cifar10               CIFAR-10 binary batches data_batch_1..5.bin, test_batch.bin
 * (raw or .gz) cifar100              CIFAR-100 binary train.bin, test.bin (fine labels) list "relative/path
 * label" list files (ImageNet-LT, Places-LT, iNat18, CIFAR JPEGs)
 *
 * Two derived splits are built here, in this order, so every program sees the same ones:
 *   1. the long-tailed subset (imb_type exp|step, imb_factor r) of the training source: class c keeps its
 *      FIRST n_c samples in file order (the CIFAR-10-LT protocol of Cui et al. / LDAM);
 *   2. the carved validation split (val_per_class > 0, no val_list): val_per_class samples per class drawn
 *      with dc_rng keyed by (seed, DC_RNG_SPLIT, class) from the LT training set; the rest is train.
 * The test split is never subsetted. docs/DATASETS.md has the formats, folder layouts and protocols.
 *
 * Storage. Binary sources and small JPEG lists (decoded size under a budget, images <= 64 px) are held in
 * memory as uint8 and transformed on the fly with OpenMP; large JPEG lists stream from disk through a pool of
 * decoding threads (datasets/prefetch.c) that dc_dataset_prefetch feeds one batch ahead.
 *
 * Randomness: the training transform of dataset sample i in epoch e is keyed by
 * dc_rng_key(seed, DC_RNG_AUGMENT, e, i), so a sample's augmentation does not depend on the batch it is in,
 * the rank that reads it or the thread that decodes it.
 *
 * Thread safety: one thread drives a dc_dataset (open/get_batch/prefetch/free); the parallelism is inside.
 */
#ifndef DC_DATASET_H
#define DC_DATASET_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

typedef enum { DC_SPLIT_TRAIN = 0, DC_SPLIT_VAL, DC_SPLIT_TEST } dc_split;

typedef struct dc_dataset dc_dataset;

/* How samples are held. AUTO picks memory when the estimated decoded size is below the budget and images
 * are small (see dc_dataset_options); binary sources (IDX, CIFAR) are always in memory. */
typedef enum { DC_STORAGE_AUTO = 0, DC_STORAGE_MEMORY, DC_STORAGE_STREAM } dc_storage;

typedef struct {
    dc_storage storage;   /* AUTO (default), or force MEMORY / STREAM for list datasets */
    size_t memory_budget; /* AUTO: decoded bytes allowed in memory (0: 2 GiB) */
    int memory_max_side;  /* AUTO: largest image side kept in memory (0: 64 px) */
} dc_dataset_options;

/* Opens one split of the dataset named by opt->dataset. Applies the long-tailed subset and the carved val
 * split for DC_SPLIT_TRAIN / DC_SPLIT_VAL. Errors (DC_FAIL, message names the file and line, or the config
 * key): missing or malformed files, labels out of range, a class with no training sample, r < 1, a split
 * that does not exist (val without val_list or val_per_class). */
int dc_dataset_open(const dc_training_opt *opt, dc_split split, dc_dataset **out);
int dc_dataset_open_ex(const dc_training_opt *opt, dc_split split, const dc_dataset_options *options,
                       dc_dataset **out);
void dc_dataset_free(dc_dataset *ds);

/* 1 if the split can be opened with this config (val needs val_list or val_per_class > 0). */
int dc_dataset_has_split(const dc_training_opt *opt, dc_split split);

int64_t dc_dataset_size(const dc_dataset *ds);
int dc_dataset_num_classes(const dc_dataset *ds);
const int32_t *dc_dataset_labels(const dc_dataset *ds);       /* [size] */
const int64_t *dc_dataset_class_counts(const dc_dataset *ds); /* [num_classes] */
int dc_dataset_channels(const dc_dataset *ds);                /* of get_batch's output */
int dc_dataset_image_size(const dc_dataset *ds);              /* output is image_size x image_size */
int dc_dataset_is_streaming(const dc_dataset *ds);
/* Position of each sample in its source (record index of the binary file, sample index of the list file,
 * before the LT subset and the carve): [size]. For tests and for tracing a sample back to its file. */
const int64_t *dc_dataset_source_indices(const dc_dataset *ds);
/* Class name (class_names file, batches.meta.txt next to CIFAR batches, built-in for (fashion_)mnist), or
 * the class number as text. */
const char *dc_dataset_class_name(const dc_dataset *ds, int c);
/* One line for logs: name, split, N, classes, max/min count, imbalance, storage, notes (LT profile, carve).
 */
const char *dc_dataset_describe(const dc_dataset *ds);

/* Fills out[n][channels][image_size][image_size] (normalised floats) and labels[n] for the dataset indices.
 * augment != 0 applies the training transform keyed by dc_rng_key(seed, DC_RNG_AUGMENT, epoch, indices[i]);
 * augment == 0 the evaluation transform. Parallel inside; call it from serial code.
 * An unreadable image (missing file, broken JPEG) is DC_FAIL naming the file and its list line, unless
 * opt->skip_bad_images: then a warning is printed once per image, dc_dataset_bad_count grows, and the sample
 * is replaced by the next readable sample of the same class (cyclically, in dataset order), with the
 * original index's augmentation key. */
int dc_dataset_get_batch(dc_dataset *ds, const int64_t *indices, int n, int augment, uint64_t seed, int epoch,
                         float *out, int32_t *labels);

/* Streaming datasets: starts decoding this batch in the background pool; the following get_batch with the
 * same (indices, augment, seed, epoch) returns it without waiting for the decode. Up to two batches may be in
 * flight; a third prefetch cancels the oldest. In-memory datasets: a no-op. Indices are copied. */
int dc_dataset_prefetch(dc_dataset *ds, const int64_t *indices, int n, int augment, uint64_t seed, int epoch);

/* Distinct unreadable images met so far (skip_bad_images). */
int64_t dc_dataset_bad_count(const dc_dataset *ds);

/* ---- building blocks (used by dc_dataset_open; public for tests and tools) ---------------------------- */

/* A parsed list file: one "path label" per line. The path is everything before the LAST run of blanks
 * (so paths may contain spaces), the label the integer after it. CRLF and blank lines are tolerated. */
typedef struct {
    int64_t n;                /* samples */
    int num_classes;          /* the given one, or max label + 1 */
    char *text;               /* paths, NUL-terminated, back to back */
    int64_t *path_offset;     /* [n] into text */
    int32_t *labels;          /* [n] */
    int64_t *line;            /* [n] 1-based line number in the source file */
    char source[DC_PATH_MAX]; /* the file, for messages */
} dc_list_file;

/* Reads and parses `path`. num_classes > 0: labels must be < num_classes; 0: num_classes = max label + 1.
 * Errors name "path:line": missing label, non-integer / negative / out-of-range label, a line longer than
 * 4095 bytes or a path longer than DC_PATH_MAX - 1, bytes that are not UTF-8, NUL bytes, no samples. */
int dc_list_file_read(const char *path, int num_classes, dc_list_file *out);
/* The same over text in memory; `source` names it in messages. */
int dc_list_file_parse(const char *text, size_t len, const char *source, int num_classes, dc_list_file *out);
void dc_list_file_free(dc_list_file *lf);
static inline const char *dc_list_file_path(const dc_list_file *lf, int64_t i) {
    return lf->text + lf->path_offset[i];
}
/* Per-class counts of a list: counts[num_classes]. */
void dc_list_file_class_counts(const dc_list_file *lf, int64_t *counts);
/* out = the samples idx[0..n) of src, in that order (lines kept). */
int dc_list_file_subset(const dc_list_file *src, const int64_t *idx, int64_t n, dc_list_file *out);

/* Class names, one per line (CRLF and trailing blank lines tolerated; an empty line in between is an error).
 * *names is one allocation: free(*names) frees everything. */
int dc_class_names_read(const char *path, int *count, char ***names);

/* Long-tailed class profile over `num_classes` classes of at most n_max samples:
 *   DC_IMB_EXP:  n_c = floor(n_max * (1/r)^(c/(C-1)))  (the CIFAR-LT protocol; C = 1 keeps n_max)
 *   DC_IMB_STEP: the first C - floor(C * minor_frac) classes keep n_max, the rest floor(n_max / r)
 *   DC_IMB_NONE: n_max for every class
 * Errors: r < 1 (or not finite), minor_frac outside [0, 1], a class that would keep 0 samples. */
int dc_lt_profile(dc_imb_type type, int num_classes, int64_t n_max, double imb_factor, double minor_frac,
                  int64_t *counts);

/* Keeps the first keep[c] samples of each class c in order: selected[*n_selected] are indices into labels,
 * ascending. A class with fewer samples keeps all of them (*short_classes counts those; may be NULL). */
int dc_lt_select(const int32_t *labels, int64_t n, int num_classes, const int64_t *keep, int64_t *selected,
                 int64_t *n_selected, int *short_classes);

/* Splits indices 0..n-1 into train and a balanced val: class c gives min(val_per_class, n_c - 1) samples to
 * val (at least one stays in train), chosen by a partial Fisher-Yates shuffle of the class's samples with
 * dc_rng keyed by (seed, DC_RNG_SPLIT, c). Both outputs ascending; train_idx and val_idx hold n entries.
 * *reduced_classes (may be NULL) counts classes that gave fewer than val_per_class. */
int dc_carve_val(const int32_t *labels, int64_t n, int num_classes, int val_per_class, uint64_t seed,
                 int64_t *train_idx, int64_t *n_train, int64_t *val_idx, int64_t *n_val,
                 int *reduced_classes);

#endif /* DC_DATASET_H */
