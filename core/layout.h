/*
 * layout.h: how activations are laid out in memory, and the conversions at the network's edges.
 *
 * Inside the network every activation is a contiguous float32 tensor in "CNHW" order:
 *
 *     x[c][n][h][w]  at  x + ((c * N + n) * H + h) * W + w        (channel-major, then batch, then space)
 *
 * Why CNHW and not PyTorch's NCHW:
 *  - A convolution lowers the whole batch into ONE fat GEMM: Y[C_out, N*H*W] = W[C_out, K] * col[K, N*H*W],
 *    and the GEMM's output is already the next layer's CNHW input. No per-image GEMMs (which are skinny on
 *    CIFAR: 16 x 1024 x 144), no transposes.
 *  - A 1x1 stride-1 convolution is that GEMM with col = x itself: no im2col at all.
 *  - Batch norm reduces over (N, H, W) for each channel: in CNHW that is one contiguous row of N*H*W floats.
 *
 * The edges stay PyTorch-shaped: images enter as NCHW (dc_nchw_to_cnhw), pooled features leave as [N, D]
 * row-major, weights are stored exactly as PyTorch stores them (conv [C_out, C_in/groups, KH, KW],
 * linear [out, in]), so safetensors files move between decouple and PyTorch without reshaping.
 */
#ifndef DC_LAYOUT_H
#define DC_LAYOUT_H

#include <stdint.h>

/* x: [N, C, P] (NCHW with P = H*W) -> y: [C, N, P] (CNHW). */
void dc_nchw_to_cnhw(const float *x, float *y, int N, int C, int64_t P);
/* x: [C, N, P] -> y: [N, C, P]. */
void dc_cnhw_to_nchw(const float *x, float *y, int N, int C, int64_t P);

#endif /* DC_LAYOUT_H */
