/*
 * conv_tuning.h: the tuning knobs of the convolution engine (conv_im2col.c), for tests and benchmarks.
 *
 * The im2col path lowers a batch in image-aligned chunks: a chunk holds
 *     images_per_chunk = clamp(max(floor(chunk_floats / (C_in*KH*KW * P)), ceil(min_cols / P)), 1, N)
 * images (P = H_out*W_out), so its col matrix [C_in*KH*KW, images_per_chunk*P] holds about chunk_floats
 * floats, but every chunk's GEMM has at least min_cols columns (a GEMM re-packs the weights each call, so
 * few columns waste time on packing). The direct path chunks its padded copies by the same chunk_floats.
 * Defaults were chosen with bench/bench_conv.c; the environment variables DC_CONV_CHUNK_FLOATS,
 * DC_CONV_CHUNK_MIN_COLS and DC_CONV_ALGO override them (read once, at the first use).
 *
 * dc_conv_workspace_floats() depends on these settings: change them before sizing the workspace, never
 * between sizing it and using it. Layers and the network never touch this header.
 */
#ifndef DC_CONV_TUNING_H
#define DC_CONV_TUNING_H

#include <stddef.h>

#include "conv.h"

/* The col-chunk budget in floats; 0 restores the default (or the environment's value). */
void dc_conv_set_chunk_floats(size_t floats);
size_t dc_conv_chunk_floats(void);

/* The fewest GEMM columns per chunk; 0 restores the default, 1 means no minimum (tests force one image per
 * chunk with dc_conv_set_chunk_floats(1) and dc_conv_set_chunk_min_cols(1)). */
void dc_conv_set_chunk_min_cols(size_t cols);
size_t dc_conv_chunk_min_cols(void);

/* Images per chunk the engine uses for this shape and batch (1 <= result <= N); for tests and benchmarks.
 * A 1x1 stride-1 pad-0 convolution needs no col and always runs the whole batch as one chunk (returns N). */
int dc_conv_images_per_chunk(const dc_conv_shape *s, int N);

/* Which algorithm runs each pass (conv_im2col.c decides; docs/PERFORMANCE.md has the measurements).
 *
 * AUTO, the default. Forward and backward-data: Winograd F(2x2,3x3) for 3x3 stride-1 passes where it measured
 * faster (>= 32 channels in and out, tile rows filling >= 3/4 of a vector, output width not a multiple of
 * 32: winograd_pass_for); else the direct AVX2 kernels where they apply (groups 1, output width % 8 == 0,
 * output channels % 8 == 0, built with AVX2+FMA; stride 1, or stride 2 with a kernel larger than 1x1 for
 * the forward pass only, its input stored as 2x2 phases); else im2col + sgemm. Backward-weights: the direct
 * kernel when the shape has stride 1 and its forward could take it, else im2col (never Winograd).
 *
 * WINOGRAD: Winograd wherever usable (3x3 stride 1, 4..256 channels, C_out % 4 == 0), backward-weights
 * included, F(4x4,3x3) at output widths that are multiples of 32. DIRECT: as AUTO without Winograd. IM2COL:
 * im2col + sgemm everywhere. Tests and benchmarks compare them. The environment variable
 * DC_CONV_ALGO=auto|winograd|direct|im2col sets the default (read once). Like the chunk budget, set it before
 * sizing the workspace. */
typedef enum {
    DC_CONV_ALGO_AUTO = 0,
    DC_CONV_ALGO_IM2COL = 1,
    DC_CONV_ALGO_DIRECT = 2,
    DC_CONV_ALGO_WINOGRAD = 3
} dc_conv_algo;
void dc_conv_set_algo(dc_conv_algo algo);
dc_conv_algo dc_conv_get_algo(void);

/* Whether forward (backward_data = 0) or backward-data (1) of this shape takes Winograd. */
int dc_conv_uses_winograd(const dc_conv_shape *s, int backward_data);

/* Whether forward (backward_data = 0) or backward-data (1) of this shape takes the direct kernel (for a
 * stride-2 shape the forward can while backward-weights and backward-data stay on im2col). */
int dc_conv_uses_direct(const dc_conv_shape *s, int backward_data);

#endif /* DC_CONV_TUNING_H */
