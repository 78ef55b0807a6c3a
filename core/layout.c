/*
 * layout.c: conversions between PyTorch's NCHW and decouple's internal CNHW activation layout (layout.h).
 *
 * Both are the same permutation of whole planes: the plane of P = H*W floats of (image n, channel c) sits at
 * x + (n*C + c)*P in NCHW and at y + (c*N + n)*P in CNHW. So a conversion is N*C contiguous copies of P
 * floats, parallel over planes (disjoint writes).
 */
#include "layout.h"

#include <string.h>

void dc_nchw_to_cnhw(const float *x, float *y, int N, int C, int64_t P) {
#pragma omp parallel for collapse(2) schedule(static) if ((int64_t)N * C * P >= ((int64_t)1 << 15))
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++)
            memcpy(y + ((int64_t)c * N + n) * P, x + ((int64_t)n * C + c) * P, sizeof(float) * (size_t)P);
}

void dc_cnhw_to_nchw(const float *x, float *y, int N, int C, int64_t P) {
#pragma omp parallel for collapse(2) schedule(static) if ((int64_t)N * C * P >= ((int64_t)1 << 15))
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++)
            memcpy(y + ((int64_t)n * C + c) * P, x + ((int64_t)c * N + n) * P, sizeof(float) * (size_t)P);
}
