/*
 * conv_winograd.h: Winograd F(2x2, 3x3) and F(4x4, 3x3) for 3x3 stride-1 convolutions (conv_winograd.c),
 * behind conv.h. A pass takes F(4x4) when its output width is a multiple of 32, else F(2x2); backward-weights
 * is always F(2x2).
 *
 * Internal to the convolution engine: conv_im2col.c chooses it for forward and for backward-data (which is
 * the forward convolution of dy with the transposed, flipped weights), and sizes its workspace. Nothing else
 * calls these functions.
 */
#ifndef DC_CONV_WINOGRAD_H
#define DC_CONV_WINOGRAD_H

#include <stddef.h>

/* One pass: out[C_out][N][H_out][W_out] = conv3x3(in[C_in][N][H_in][W_in], stride 1, zero padding `pad`),
 * H_out = H_in + 2*pad - 2. The weights are PyTorch's [C_out][C_in][3][3], or, with transpose = 1, the
 * weights of the opposite convolution [C_in][C_out][3][3] transposed and flipped (backward-data). */
typedef struct {
    int C_in, C_out;
    int H_in, W_in, pad;
    int H_out, W_out;
    int transpose;
} dc_wino_pass;

/* 1 when the pass can run here: built with AVX2 + FMA, 4 <= channels <= 256, C_out % 4 == 0, pad <= 2. */
int dc_wino_usable(const dc_wino_pass *p);

/* The output tile size the pass takes: 4 (F(4x4,3x3)) when its output width is a multiple of 32, else 2. */
int dc_wino_tile(const dc_wino_pass *p);

/* Workspace floats for a batch of N (transformed weights plus one tile block per thread slot). */
size_t dc_wino_workspace_floats(const dc_wino_pass *p, int N);

/* Runs the pass; out is overwritten, bias (C_out values) added when non-NULL. w as described above. */
void dc_wino_run(const dc_wino_pass *p, int N, const float *in, const float *w, const float *bias, float *out,
                 float *workspace);

/* Backward-weights of the forward pass p (transpose = 0): dw[C_out][C_in][3][3] += dL/dw given x (the
 * pass's input) and dy (its output gradient). */
void dc_wino_backward_weights(const dc_wino_pass *p, int N, const float *x, const float *dy, float *dw,
                              float *workspace);

#endif /* DC_CONV_WINOGRAD_H */
