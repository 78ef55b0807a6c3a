/*
 * dataset_internal.h: what the dataset sources (idx.c, cifar_bin.c, list_file.c), the dataset core
 * (dataset.c) and the streaming pool (prefetch.c) share. Not part of the public interface.
 */
#ifndef DC_DATASET_INTERNAL_H
#define DC_DATASET_INTERNAL_H

#include "datasets/dataset.h"
#include "datasets/image.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* ---- binary sources: every image decoded, same geometry ---- */
typedef struct {
    int64_t n;
    int w, h, c;     /* every image is h x w x c */
    uint8_t *pix;    /* [n][h][w][c] (HWC, as dc_image) */
    int32_t *labels; /* [n] */
} dc_raw_images;

void dc_raw_images_free(dc_raw_images *raw);

/* IDX (MNIST / Fashion-MNIST): an images file (magic 0x00000803, n x rows x cols ubyte) and a labels file
 * (magic 0x00000801, n ubyte), raw or gzip (zlib reads both). Labels must be < num_classes. */
int dc_idx_load(const char *images_path, const char *labels_path, int num_classes, dc_raw_images *out);

/* CIFAR binary batches, concatenated in the order given (raw or gzip). cifar100 = 0: records of 1 label byte
 * + 3072 pixel bytes (CIFAR-10, labels < 10); cifar100 = 1: coarse byte, fine byte, 3072 (label = fine,
 * < 100; coarse checked < 20). Pixels are stored planar R, G, B (1024 each) on disk, HWC here. */
int dc_cifar_bin_load(const char *const *paths, int n_paths, int cifar100, dc_raw_images *out);

/* Whole file into memory, NUL-terminated (list_file.c). */
int dc_read_whole_file(const char *path, char **data, size_t *len);

/* ---- the dataset ---- */

/* Per-thread buffers of the image path: the file's bytes, the decoded image, the transform's scratch. They
 * grow to the largest image seen and are then reused, so steady-state decoding does not allocate. */
typedef struct {
    uint8_t *file;
    size_t file_cap;
    dc_image img;
    void *scratch;
    size_t scratch_cap;
} dc_decode_buf;

void dc_decode_buf_free(dc_decode_buf *b);

typedef struct dc_prefetch dc_prefetch;

struct dc_dataset {
    char name[DC_NAME_MAX];
    dc_split split;
    char description[1024];

    int64_t n;
    int num_classes;
    int32_t *labels;        /* [n] */
    int64_t *class_counts;  /* [num_classes] */
    int64_t *source_index;  /* [n] position in the source file / list */
    int64_t *class_start;   /* [num_classes + 1]: class c's samples are class_members[start[c]..start[c+1]) */
    int64_t *class_members; /* [n] dataset indices grouped by class, ascending inside a class */
    int64_t *position_in_class; /* [n] where sample i sits in its class's member list */
    char **class_names;         /* [num_classes], one allocation */

    int channels, image_size; /* of get_batch's output */
    dc_transform transform;
    int skip_bad_images;

    /* in memory: uint8 HWC images back to back */
    int in_memory;
    uint8_t *pix;
    int64_t *pix_offset;    /* [n] */
    int32_t *img_w, *img_h; /* [n] */
    int img_c;
    int max_w, max_h;
    void **scratch; /* per OpenMP thread, scratch_bytes each */
    int n_scratch;
    size_t scratch_bytes;

    /* list datasets: file names and list lines of the samples (kept for messages in memory mode too) */
    int is_list;
    dc_list_file list;
    char data_root[DC_PATH_MAX];

    /* streaming */
    int decode_threads;
    dc_prefetch *prefetch;

    /* unreadable images (skip_bad_images): bad[i] = 1 once sample i failed to load */
    atomic_uchar *bad;
    atomic_llong bad_count;
};

/* Reads sample i's file and decodes it into b->img (min_side: the DCT-scaling hint). Errors name the file
 * and its list line. */
int dc_dataset_decode_file(const dc_dataset *ds, int64_t i, int min_side, dc_decode_buf *b);

/* Streaming: produces sample i (decode + transform with the key of i) into out[channels][size][size],
 * replacing an unreadable image by the next readable one of its class when skip_bad_images is set. */
int dc_dataset_stream_sample(dc_dataset *ds, int64_t i, int augment, uint64_t seed, int epoch, float *out,
                             dc_decode_buf *b);

/* Records that sample j is unreadable (message = the current error): warns once and counts it. */
void dc_dataset_mark_bad(dc_dataset *ds, int64_t j);

/* ---- the streaming pool (prefetch.c) ---- */
int dc_prefetch_create(dc_dataset *ds, int threads, dc_prefetch **out);
void dc_prefetch_free(dc_prefetch *pf);
/* Starts a batch (idempotent for a batch already in flight). */
int dc_prefetch_submit(dc_prefetch *pf, const int64_t *idx, int n, int augment, uint64_t seed, int epoch);
/* Waits for the batch (submitting it first if it is not in flight) and copies it to out. */
int dc_prefetch_collect(dc_prefetch *pf, const int64_t *idx, int n, int augment, uint64_t seed, int epoch,
                        float *out);

#endif /* DC_DATASET_INTERNAL_H */
