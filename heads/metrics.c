/*
 * metrics.c: additive per-class counters and the summaries computed from them (metrics.h).
 */
#define _GNU_SOURCE
#include "metrics.h"

#include "core/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int dc_metrics_init(dc_metrics *m, int num_classes) {
    memset(m, 0, sizeof *m);
    if (num_classes < 1) return DC_ERR("metrics: num_classes must be >= 1");
    m->buf = dc_calloc((size_t)3 * num_classes, sizeof(int64_t));
    if (!m->buf) return DC_FAIL;
    m->num_classes = num_classes;
    m->count = m->buf;
    m->correct1 = m->buf + num_classes;
    m->correct5 = m->buf + 2 * num_classes;
    return DC_OK;
}

void dc_metrics_free(dc_metrics *m) {
    free(m->buf);
    memset(m, 0, sizeof *m);
}

void dc_metrics_reset(dc_metrics *m) {
    memset(m->buf, 0, (size_t)3 * m->num_classes * sizeof(int64_t));
}

void dc_metrics_add(dc_metrics *m, const float *logits, const int32_t *labels, int N) {
    const int C = m->num_classes;
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * C;
        int y = labels[n];
        /* rank of the true class: the number of classes that beat it (ties go to the lower index) */
        float zy = z[y];
        int better = 0;
        for (int j = 0; j < C; j++)
            if (z[j] > zy || (z[j] == zy && j < y)) better++;
        m->count[y]++;
        if (better == 0) m->correct1[y]++;
        if (better < 5) m->correct5[y]++;
    }
}

double dc_metrics_class_acc(const dc_metrics *m, int c) {
    return m->count[c] ? (double)m->correct1[c] / (double)m->count[c] : NAN;
}

static int by_train_count(const void *a, const void *b, void *ctx) {
    const int64_t *counts = ctx;
    int i = *(const int *)a, j = *(const int *)b;
    if (counts[i] != counts[j]) return counts[i] < counts[j] ? -1 : 1;
    return (i > j) - (i < j);
}

void dc_metrics_summarize(const dc_metrics *m, const int64_t *train_counts, dc_metrics_summary *s) {
    memset(s, 0, sizeof *s);
    int64_t c1 = 0, c5 = 0;
    double macro = 0, many = 0, med = 0, few = 0;
    int present = 0;
    for (int c = 0; c < m->num_classes; c++) {
        s->total += m->count[c];
        c1 += m->correct1[c];
        c5 += m->correct5[c];
        if (!m->count[c]) continue;
        double acc = dc_metrics_class_acc(m, c);
        macro += acc;
        present++;
        if (train_counts) {
            if (train_counts[c] >= DC_MANY_SHOT_MIN) {
                many += acc;
                s->n_many++;
            } else if (train_counts[c] <= DC_FEW_SHOT_MAX) {
                few += acc;
                s->n_few++;
            } else {
                med += acc;
                s->n_medium++;
            }
        }
    }
    /* tail half: the C/2 classes with the fewest training images (stable order: count, then index) */
    s->tail_half = NAN;
    if (train_counts && m->num_classes >= 2) {
        const int C = m->num_classes;
        int *order = malloc((size_t)C * sizeof(int));
        if (order) {
            for (int c = 0; c < C; c++) order[c] = c;
            qsort_r(order, (size_t)C, sizeof(int), by_train_count, (void *)train_counts);
            double acc_sum = 0;
            int n = 0;
            for (int k = 0; k < C / 2; k++)
                if (m->count[order[k]]) {
                    acc_sum += dc_metrics_class_acc(m, order[k]);
                    n++;
                }
            if (n) s->tail_half = acc_sum / n;
            free(order);
        }
    }
    s->top1 = s->total ? (double)c1 / (double)s->total : NAN;
    s->top5 = s->total ? (double)c5 / (double)s->total : NAN;
    s->macro_top1 = present ? macro / present : NAN;
    s->many = s->n_many ? many / s->n_many : NAN;
    s->medium = s->n_medium ? med / s->n_medium : NAN;
    s->few = s->n_few ? few / s->n_few : NAN;
}
