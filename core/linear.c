/*
 * linear.c: the fully connected classifier y = x W^T + b (layers.h), three GEMMs through OpenBLAS.
 *
 * Shapes (row-major): x [N, D], W [K, D] (PyTorch's [out, in]), b [K], y [N, K].
 *
 *   forward   y  = x W^T + b         sgemm(NoTrans, Trans)   M=N, N=K, K=D, C pre-filled with b (beta = 1)
 *   backward  dW += dy^T x           sgemm(Trans, NoTrans)   M=K, N=D, K=N, beta = 1 (accumulate)
 *             db += sum_n dy[n, :]   column sums in double, rows in order
 *             dx  = dy W             sgemm(NoTrans, NoTrans) M=N, N=D, K=K, beta = 0 (overwrite)
 *
 * The transposes are expressed through the BLAS flags, so W is never copied. These functions are called from
 * serial code; OpenBLAS (the OpenMP build) runs its own threads inside the GEMM.
 */
#include "layers.h"

#include <cblas.h>

void dc_linear_forward(int N, int D, int K, const float *x, const float *W, const float *b, float *y) {
    if (N <= 0 || K <= 0) return;
    float beta = 0.0f;
    if (b) {
        for (int n = 0; n < N; n++)
            for (int k = 0; k < K; k++) y[(int64_t)n * K + k] = b[k];
        beta = 1.0f;
    }
    if (D <= 0) {
        /* no inputs: y = b (or 0) */
        if (!b)
            for (int64_t i = 0; i < (int64_t)N * K; i++) y[i] = 0.0f;
        return;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, K, D, 1.0f, x, D, W, D, beta, y, K);
}

void dc_linear_backward(int N, int D, int K, const float *x, const float *W, const float *dy, float *dx,
                        float *dW, float *db) {
    if (K <= 0) { /* no outputs: nothing flows back */
        if (dx)
            for (int64_t i = 0; i < (int64_t)N * D; i++) dx[i] = 0.0f;
        return;
    }
    if (N > 0 && D > 0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, D, N, 1.0f, dy, K, x, D, 1.0f, dW, D);
    if (db && N > 0) {
        /* column sums in blocks of DB_BLOCK columns so that each row is read contiguously; every column is
         * still summed over n = 0, 1, ..., N-1 in order */
        enum { DB_BLOCK = 64 };
        for (int k0 = 0; k0 < K; k0 += DB_BLOCK) {
            int kn = K - k0 < DB_BLOCK ? K - k0 : DB_BLOCK;
            double acc[DB_BLOCK] = {0};
            for (int n = 0; n < N; n++) {
                const float *row = dy + (int64_t)n * K + k0;
                for (int j = 0; j < kn; j++) acc[j] += (double)row[j];
            }
            for (int j = 0; j < kn; j++) db[k0 + j] += (float)acc[j];
        }
    }
    if (dx && N > 0 && D > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, D, K, 1.0f, dy, K, W, D, 0.0f, dx, D);
}
