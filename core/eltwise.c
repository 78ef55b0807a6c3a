/*
 * eltwise.c: the elementwise layers of a residual network (layers.h): ReLU, the residual add, and the fused
 * add + ReLU that ends every block.
 *
 * These are memory-bound single loops with no cross-element dependence, so they are written as plain loops
 * the compiler vectorises, split over threads only when the array is large enough to pay for the fork
 * (the OpenMP `if` clause). Every loop reads element i before writing element i and touches nothing else,
 * which is what makes the in-place uses in layers.h (y aliasing x, a or b; dx aliasing dy) safe.
 *
 * The ReLU derivative at 0 is taken as 0 and the mask is computed from the OUTPUT y (y > 0), as PyTorch's
 * threshold_backward does; for y = max(x, 0) this is the same as x > 0, and it lets the backward of the fused
 * add + ReLU work without keeping a + b. The forward is written as x < 0 ? 0 : x so that a NaN passes through
 * (as torch.relu does) instead of being silently turned into 0, which would hide a diverged run.
 */
#include "layers.h"

/* Below this many elements a single thread is faster than waking the team. */
#define ELTWISE_PAR_MIN 65536

void dc_relu_forward(int64_t n, const float *x, float *y) {
#pragma omp parallel for simd schedule(static) if (n >= ELTWISE_PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = x[i] < 0.0f ? 0.0f : x[i];
}

void dc_relu_backward(int64_t n, const float *y, const float *dy, float *dx) {
#pragma omp parallel for simd schedule(static) if (n >= ELTWISE_PAR_MIN)
    for (int64_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
}

void dc_add_forward(int64_t n, const float *a, const float *b, float *y) {
#pragma omp parallel for simd schedule(static) if (n >= ELTWISE_PAR_MIN)
    for (int64_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}

void dc_add_relu_forward(int64_t n, const float *a, const float *b, float *y) {
#pragma omp parallel for simd schedule(static) if (n >= ELTWISE_PAR_MIN)
    for (int64_t i = 0; i < n; i++) {
        float s = a[i] + b[i];
        y[i] = s < 0.0f ? 0.0f : s;
    }
}
