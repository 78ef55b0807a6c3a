/*
 * softmax_ce.c: softmax cross-entropy with an optional per-class logit offset (layers.h).
 *
 * For one sample with logits z (plus offset, when given: z_j = logits_j + offset_j, added in float exactly as
 * `logits + offset` would be in PyTorch) and label y:
 *
 *   m    = max_j z_j                     (subtracting it keeps every exp() argument <= 0: no overflow)
 *   lse  = m + log(sum_j exp(z_j - m))   (in double)
 *   loss = lse - z_y = -log softmax(z)_y
 *   dloss/dz_j = p_j - [j == y],  p_j = exp(z_j - lse)
 *
 * The offset is a constant shift of the logits, so the gradient w.r.t. the logits is that of the shifted
 * logits: the logit-adjusted and Balanced-Softmax losses need nothing else here.
 *
 * The exponentials are computed once, in double, and kept (rounded to float) in the dlogits row, which is
 * then rescaled to probabilities; the sample loss is summed in double. Rows are independent and split over
 * threads in a FIXED number of contiguous chunks whose partial sums are added in chunk order, so the returned
 * loss does not depend on the thread count.
 *
 * Labels are validated by the data loader; a label outside [0, K) gives a NaN loss here (never an
 * out-of-bounds read), so a bad label cannot pass unnoticed.
 */
#include "layers.h"

#include <math.h>

#define CE_CHUNKS  64    /* fixed partition of the rows for the deterministic loss sum */
#define CE_PAR_MIN 65536 /* N*K below which one thread is faster */

/* Loss of row n; writes grad_scale*(p - onehot) into drow when it is not NULL. */
static double ce_row(int K, const float *zrow, const float *offset, int32_t label, float grad_scale,
                     float *drow) {
    /* max of the shifted logits; NaN logits are not skipped on purpose: they make the loss NaN below */
    float m = offset ? zrow[0] + offset[0] : zrow[0];
    for (int j = 1; j < K; j++) {
        float z = offset ? zrow[j] + offset[j] : zrow[j];
        if (z > m) m = z;
    }
    double s = 0.0;
    for (int j = 0; j < K; j++) {
        float z = offset ? zrow[j] + offset[j] : zrow[j];
        double e = exp((double)z - (double)m);
        s += e;
        if (drow) drow[j] = (float)e;
    }
    const double lse = (double)m + log(s);
    const int valid = label >= 0 && label < K;
    double loss = NAN;
    if (valid) {
        float zy = offset ? zrow[label] + offset[label] : zrow[label];
        loss = lse - (double)zy;
    }
    if (drow) {
        const double scale = (double)grad_scale / s;
        for (int j = 0; j < K; j++) drow[j] = (float)((double)drow[j] * scale);
        /* the label entry is recomputed in double: for a confident correct prediction p_y - 1 is a small
         * difference of numbers near 1, so it is formed before rounding */
        if (valid) {
            float zy = offset ? zrow[label] + offset[label] : zrow[label];
            drow[label] = (float)((double)grad_scale * (exp((double)zy - lse) - 1.0));
        }
    }
    return loss;
}

double dc_softmax_ce(int N, int K, const float *logits, const int32_t *labels, const float *offset,
                     float grad_scale, float *dlogits) {
    if (N <= 0 || K <= 0) return 0.0;
    double partial[CE_CHUNKS];
    const int chunk = (N + CE_CHUNKS - 1) / CE_CHUNKS;
#pragma omp parallel for schedule(static) if ((int64_t)N * K >= CE_PAR_MIN)
    for (int ci = 0; ci < CE_CHUNKS; ci++) {
        double acc = 0.0;
        int n1 = (ci + 1) * chunk < N ? (ci + 1) * chunk : N;
        for (int n = ci * chunk; n < n1; n++)
            acc += ce_row(K, logits + (int64_t)n * K, offset, labels[n], grad_scale,
                          dlogits ? dlogits + (int64_t)n * K : NULL);
        partial[ci] = acc;
    }
    double total = 0.0;
    for (int ci = 0; ci < CE_CHUNKS; ci++) total += partial[ci];
    return total;
}
