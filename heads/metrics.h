/*
 * metrics.h: top-1 / top-5, micro and macro accuracy, and the many / medium / few-shot split.
 *
 * The counters are per class and additive, so sharded evaluation sums them over ranks (one reduction of
 * 3*C int64) and rank 0 computes everything else from the sums:
 *   micro top-1 = sum(correct1) / sum(count)
 *   macro top-1 = mean over classes present in the eval set of correct1_c / count_c
 *   many / medium / few = macro accuracy over the classes with > 100, 20..100, < 20 TRAINING images
 *   (the reference's shot_acc thresholds, from the train counts, not the eval counts).
 */
#ifndef DC_METRICS_H
#define DC_METRICS_H

#include <stdint.h>

typedef struct {
    int num_classes;
    int64_t *count;    /* [C] eval samples per class */
    int64_t *correct1; /* [C] */
    int64_t *correct5; /* [C] */
    int64_t *buf;      /* one allocation: count | correct1 | correct5 (reduce it whole: 3*C values) */
} dc_metrics;

int dc_metrics_init(dc_metrics *m, int num_classes);
void dc_metrics_free(dc_metrics *m);
void dc_metrics_reset(dc_metrics *m);

/* Adds a batch: logits [N, C] row-major, labels [N]. Ties: the lowest class index wins (as torch.topk/argmax
 * on CPU in practice; documented, and irrelevant for real-valued logits). */
void dc_metrics_add(dc_metrics *m, const float *logits, const int32_t *labels, int N);

typedef struct {
    int64_t total;
    double top1, top5; /* micro */
    double macro_top1;
    double many, medium, few;    /* NAN when the group has no class in the eval set */
    int n_many, n_medium, n_few; /* classes per group (present in the eval set) */
    double tail_half;            /* macro accuracy over the half of the classes with the fewest training
                                    images (ties by class index; the paper's "tail" view independent of the
                                    100/20 thresholds, useful when a group is empty) */
} dc_metrics_summary;

/* train_counts [C] (NULL: no shot split). */
void dc_metrics_summarize(const dc_metrics *m, const int64_t *train_counts, dc_metrics_summary *s);

/* Accuracy of class c (NAN when absent). */
double dc_metrics_class_acc(const dc_metrics *m, int c);

#define DC_MANY_SHOT_MIN 101 /* > 100 */
#define DC_FEW_SHOT_MAX  19  /* < 20 */

#endif
