/*
 * conv.h: the convolution engine interface.
 *
 * All layers call convolution only through these functions; the engine behind them (today: batched im2col +
 * OpenBLAS sgemm, see conv_im2col.c) can be replaced by a faster one (Winograd, blocked direct kernels,
 * oneDNN) without touching the layers or the network.
 *
 * Layout (see layout.h): x is CNHW [C_in, N, H_in, W_in], y is CNHW [C_out, N, H_out, W_out], the weight is
 * PyTorch's [C_out, C_in/groups, KH, KW]. Output size: H_out = (H_in + 2*pad - KH) / stride + 1.
 *
 * Math, per group g with K = (C_in/groups)*KH*KW and M = N*H_out*W_out:
 *     forward          y_g[C_out/g, M] = W_g[C_out/g, K] * col_g[K, M]          col = im2col(x)
 *     backward weights dW_g += dy_g[C_out/g, M] * col_g^T[M, K]
 *     backward data    dcol_g = W_g^T[K, C_out/g] * dy_g[C_out/g, M];  dx = col2im(dcol)
 * The engine processes the M columns in image-aligned chunks so the col workspace stays bounded and warm in
 * cache; chunking never changes the result of forward or backward-data, and backward-weights accumulates
 * chunk by chunk in a fixed order (deterministic for a fixed thread count).
 *
 * Threads: the engine is called from serial code. OpenBLAS (the OpenMP build) and the engine's own
 * "#pragma omp parallel for" loops share the one OpenMP thread pool; see docs/ARCHITECTURE.md, "Threads".
 */
#ifndef DC_CONV_H
#define DC_CONV_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int C_in, C_out;
    int KH, KW;
    int stride, pad, groups;
    int H_in, W_in;   /* input spatial size (set at plan time) */
    int H_out, W_out; /* derived by dc_conv_shape_init */
} dc_conv_shape;

/* Fills H_out/W_out and validates the shape (channel counts divisible by groups, positive output).
 * Returns DC_OK or DC_FAIL with a message. */
int dc_conv_shape_init(dc_conv_shape *s, int C_in, int C_out, int KH, int KW, int stride, int pad, int groups,
                       int H_in, int W_in);

/* Floats of workspace the engine needs for a batch of N (the same for forward and backward). The caller
 * allocates it once, at the maximum over all layers, and passes it to every call. */
size_t dc_conv_workspace_floats(const dc_conv_shape *s, int N);

/* y = conv(x, w) (+ bias[C_out] when bias != NULL). y is overwritten. */
void dc_conv_forward(const dc_conv_shape *s, int N, const float *x, const float *w, const float *bias,
                     float *y, float *workspace);

/* Given dy, ACCUMULATES dw += dL/dw (and dbias += dL/dbias when dbias != NULL), and OVERWRITES
 * dx = dL/dx when dx != NULL (pass NULL for the network's input layer). */
void dc_conv_backward(const dc_conv_shape *s, int N, const float *x, const float *w, const float *dy,
                      float *dx, float *dw, float *dbias, float *workspace);

/* Multiply-accumulates of one forward pass for batch N (for GFLOP/s reporting). */
double dc_conv_macs(const dc_conv_shape *s, int N);

#endif /* DC_CONV_H */
