/*
 * pool.c: max pooling (the 3x3/2 pool after the ImageNet stem) and global average pooling (the end of the
 * backbone), over CNHW activations (layers.h).
 *
 * Max pool. Each (c, n) pair is an independent H x W plane at x + (c*N + n)*H*W, so the planes are split
 * over threads. The window of output (oh, ow) covers rows oh*S - P .. oh*S - P + K - 1 (and likewise for
 * columns); positions outside the image are padding, which behaves as -inf: it can never be the maximum, so
 * we simply clip the window to the image. Within the window the first maximum in row-major order wins
 * (strict >), and a NaN wins over everything, as in PyTorch's CPU kernel, so a NaN propagates forward and its
 * gradient lands on it. The recorded argmax is the flat index h*W + w within the plane, PyTorch's convention
 * for max_pool2d's indices. If a window lies entirely in the padding (only possible for P > K/2, which
 * PyTorch rejects) the output is -inf and the argmax -1, and backward skips it.
 *
 * Backward zero-fills dx and adds each output gradient to its argmax: with overlapping windows (K > S) one
 * input can win several windows and then receives the sum. Within one plane the scatter is serial, so the
 * sum order is fixed.
 *
 * Global average pool: y[n, c] = (1/P) sum_p x[c, n, p], summed in double so that the feature vector does
 * not depend on P's size or order; this is also the CNHW -> [N, C] row-major switch to the classifier.
 */
#include "layers.h"

#include <math.h>
#include <string.h>

#define POOL_PAR_MIN 32768

void dc_maxpool_forward(int C, int N, int H, int W, int K, int S, int P, const float *x, float *y,
                        int32_t *argmax) {
    if (C <= 0 || N <= 0 || K <= 0 || S <= 0 || H + 2 * P < K || W + 2 * P < K) return;
    const int OH = (H + 2 * P - K) / S + 1, OW = (W + 2 * P - K) / S + 1;
    const int64_t planes = (int64_t)C * N, in_plane = (int64_t)H * W, out_plane = (int64_t)OH * OW;

#pragma omp parallel for schedule(static) if (planes * in_plane >= POOL_PAR_MIN)
    for (int64_t pl = 0; pl < planes; pl++) {
        const float *xp = x + pl * in_plane;
        float *yp = y + pl * out_plane;
        int32_t *ap = argmax + pl * out_plane;
        for (int oh = 0; oh < OH; oh++) {
            int h0 = oh * S - P, h1 = h0 + K;
            if (h0 < 0) h0 = 0;
            if (h1 > H) h1 = H;
            for (int ow = 0; ow < OW; ow++) {
                int w0 = ow * S - P, w1 = w0 + K;
                if (w0 < 0) w0 = 0;
                if (w1 > W) w1 = W;
                float best = -INFINITY;
                int32_t best_idx = (h0 < h1 && w0 < w1) ? h0 * W + w0 : -1;
                for (int h = h0; h < h1; h++)
                    for (int w = w0; w < w1; w++) {
                        float v = xp[h * W + w];
                        if (v > best || isnan(v)) {
                            best = v;
                            best_idx = h * W + w;
                        }
                    }
                yp[oh * OW + ow] = best;
                ap[oh * OW + ow] = best_idx;
            }
        }
    }
}

void dc_maxpool_backward(int C, int N, int H, int W, int K, int S, int P, const float *dy,
                         const int32_t *argmax, float *dx) {
    if (C <= 0 || N <= 0 || K <= 0 || S <= 0) return;
    const int valid = H + 2 * P >= K && W + 2 * P >= K; /* otherwise there is no output: dx is all zero */
    const int OH = (H + 2 * P - K) / S + 1, OW = (W + 2 * P - K) / S + 1;
    const int64_t planes = (int64_t)C * N, in_plane = (int64_t)H * W;
    const int64_t out_plane = valid ? (int64_t)OH * OW : 0;

#pragma omp parallel for schedule(static) if (planes * in_plane >= POOL_PAR_MIN)
    for (int64_t pl = 0; pl < planes; pl++) {
        float *dxp = dx + pl * in_plane;
        const float *dyp = dy + pl * out_plane;
        const int32_t *ap = argmax + pl * out_plane;
        memset(dxp, 0, (size_t)in_plane * sizeof(float));
        for (int64_t o = 0; o < out_plane; o++)
            if (ap[o] >= 0) dxp[ap[o]] += dyp[o];
    }
}

void dc_avgpool_forward(int C, int N, int64_t P, const float *x, float *y) {
    if (C <= 0 || N <= 0) return;
    const double inv_p = P > 0 ? 1.0 / (double)P : 0.0;
#pragma omp parallel for schedule(static) if ((int64_t)C * N * P >= POOL_PAR_MIN)
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++) {
            const float *xp = x + ((int64_t)c * N + n) * P;
            double acc[4] = {0, 0, 0, 0};
            int64_t p = 0;
            for (; p + 4 <= P; p += 4)
                for (int j = 0; j < 4; j++) acc[j] += (double)xp[p + j];
            for (int j = 0; p < P; p++, j++) acc[j] += (double)xp[p];
            y[(int64_t)n * C + c] = (float)(((acc[0] + acc[1]) + (acc[2] + acc[3])) * inv_p);
        }
}

void dc_avgpool_backward(int C, int N, int64_t P, const float *dy, float *dx) {
    if (C <= 0 || N <= 0) return;
    const double inv_p = P > 0 ? 1.0 / (double)P : 0.0;
#pragma omp parallel for schedule(static) if ((int64_t)C * N * P >= POOL_PAR_MIN)
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++) {
            float g = (float)((double)dy[(int64_t)n * C + c] * inv_p);
            float *dxp = dx + ((int64_t)c * N + n) * P;
            for (int64_t p = 0; p < P; p++) dxp[p] = g;
        }
}
