/*
 * test_metrics.c: top-1/top-5, micro/macro, many/medium/few and tail-half on hand-computed examples, and the
 * additivity that sharded evaluation relies on (counters of two shards summed = counters of the whole).
 */
#include "heads/metrics.h"
#include "core/check.h"
#include "testutil.h"

#include <math.h>
#include <string.h>

int main(void) {
    /* 6 classes; train counts: 500 (many), 101 (many), 100 (medium), 20 (medium), 19 (few), 2 (few) */
    const int C = 6;
    const int64_t train[6] = {500, 101, 100, 20, 19, 2};
    dc_metrics m;
    REQUIRE(dc_metrics_init(&m, C) == DC_OK);
    /* logits: one-hot-ish rows; sample i predicts class pred[i] with the true class ranked rank[i] */
    const int32_t labels[8] = {0, 0, 1, 2, 3, 4, 5, 5};
    const int pred[8] = {0, 1, 1, 2, 0, 4, 0, 5};
    float logits[8 * 6];
    for (int i = 0; i < 8; i++) {
        for (int j = 0; j < C; j++) logits[i * C + j] = -(float)j; /* class order 0 > 1 > 2 ... */
        logits[i * C + pred[i]] = 10.0f;
    }
    dc_metrics_add(&m, logits, labels, 8);
    /* correct: samples 0, 2, 3, 5, 7 -> 5 of 8 */
    dc_metrics_summary s;
    dc_metrics_summarize(&m, train, &s);
    EXPECT(s.total == 8);
    EXPECT(fabs(s.top1 - 5.0 / 8) < 1e-12);
    /* per class: c0 1/2, c1 1, c2 1, c3 0, c4 1, c5 1/2 -> macro 4/6 */
    EXPECT(fabs(s.macro_top1 - 4.0 / 6) < 1e-12);
    EXPECT(s.n_many == 2 && s.n_medium == 2 && s.n_few == 2);
    EXPECT(fabs(s.many - 0.75) < 1e-12);     /* (1/2 + 1) / 2 */
    EXPECT(fabs(s.medium - 0.5) < 1e-12);    /* (1 + 0) / 2 */
    EXPECT(fabs(s.few - 0.75) < 1e-12);      /* (1 + 1/2) / 2 */
    EXPECT(fabs(s.tail_half - 0.5) < 1e-12); /* classes 5, 4, 3: (1/2 + 1 + 0) / 3 */
    /* top-5: sample 4 (label 3, predicted 0): class 3 is ranked behind 0 (10), 1, 2 -> 4th: inside top-5 */
    EXPECT(m.correct5[3] == 1);
    /* sample 6 (label 5, predicted 0): classes 0..4 all beat 5 -> outside the top 5 */
    EXPECT(fabs(s.top5 - 7.0 / 8) < 1e-12);

    /* additivity: two shards summed equal the whole */
    dc_metrics a, b;
    REQUIRE(dc_metrics_init(&a, C) == DC_OK && dc_metrics_init(&b, C) == DC_OK);
    dc_metrics_add(&a, logits, labels, 3);
    dc_metrics_add(&b, logits + 3 * C, labels + 3, 5);
    for (int k = 0; k < 3 * C; k++) a.buf[k] += b.buf[k];
    EXPECT(memcmp(a.buf, m.buf, sizeof(int64_t) * 3 * C) == 0);

    /* an empty group is NAN, not 0 */
    const int64_t all_many[6] = {500, 500, 500, 500, 500, 500};
    dc_metrics_summarize(&m, all_many, &s);
    EXPECT(isnan(s.few) && isnan(s.medium) && s.n_many == 6);
    /* ties: the lower class index wins, so an all-equal row predicts class 0 */
    dc_metrics_reset(&m);
    float flat[6] = {1, 1, 1, 1, 1, 1};
    int32_t y0 = 0, y3 = 3;
    dc_metrics_add(&m, flat, &y0, 1);
    dc_metrics_add(&m, flat, &y3, 1);
    EXPECT(m.correct1[0] == 1 && m.correct1[3] == 0 && m.correct5[3] == 1);
    dc_metrics_free(&m);
    dc_metrics_free(&a);
    dc_metrics_free(&b);
    return tu_finish("test_metrics");
}
