/*
 * net.h: ResNet / ResNeXt networks, built from a description, with a hand-written forward and backward.
 *
 *   CIFAR ResNet-(6n+2)  resnet20/32/44/56/110: 3x3 stem (16 ch), three stages of n BasicBlocks with 16/32/64
 *                        channels (stride 2 at stages 2 and 3), a 1x1 conv + BN projection shortcut where the
 *                        shape changes ("option B"), global average pool, fc. Feature dim 64.
 *   torchvision ResNets  resnet10/18/34 (BasicBlock, [1,1,1,1]/[2,2,2,2]/[3,4,6,3]),
 *                        resnet50/101/152 (Bottleneck, [3,4,6,3]/[3,4,23,3]/[3,8,36,3]),
 *                        resnext50_32x4d (Bottleneck, 32 groups, width 4 per group): 7x7/2 stem + 3x3/2
 *                        max-pool, stages of 64/128/256/512 planes, stride 2 on the 3x3 conv (torchvision
 *                        v1.5), feature dim 512 (Basic) or 2048 (Bottleneck).
 *
 * State-dict names follow torchvision for every architecture (docs/CHECKPOINTS.md): conv1.weight,
 * bn1.{weight,bias,running_mean,running_var,num_batches_tracked}, layerS.B.convK.weight, layerS.B.bnK.*,
 * layerS.B.downsample.0.weight (the 1x1 conv), layerS.B.downsample.1.* (its BN), fc.weight, fc.bias.
 * CIFAR nets have layer1..layer3 and no max-pool; everything else is identical, so a PyTorch user builds the
 * same module with the class in tests/torch_models.py and calls load_state_dict.
 *
 * Memory: parameters, gradients and buffers are three slabs; all activations, the saved BN statistics, the
 * gradient scratch and the conv workspace are allocated once at create time for `max_batch` images, so a
 * training step allocates nothing.
 */
#ifndef DC_NET_H
#define DC_NET_H

#include "conv.h"
#include "layers.h"
#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    char arch[64];
    int in_channels;
    int num_classes;
    int image_h, image_w;
    int max_batch; /* the largest per-rank batch forward/backward will be called with */
    /* 1: forward only (features, evaluation, inference). Activations share four rotating buffers of the
     * largest activation's size instead of one buffer each, and no gradients or backward scratch are
     * allocated; dc_net_backward must not be called. ResNet-32 at batch 256: 67 MB instead of 560 MB. */
    int inference_only;
} dc_net_desc;

typedef struct {
    dc_conv_shape shape;
    float *w, *dw; /* views into the slabs, [C_out, C_in/groups, KH, KW] */
} dc_conv_layer;

typedef struct {
    int C;
    float *gamma, *beta, *dgamma, *dbeta;
    float *running_mean, *running_var;
    int64_t *num_batches_tracked;
    float *save_mean, *save_rstd; /* [C], written by training forward for backward */
} dc_bn_layer;

typedef struct {
    int bottleneck;
    int has_downsample;
    dc_conv_layer conv[3]; /* conv1, conv2 (3x3), conv3 (bottleneck only) */
    dc_bn_layer bn[3];
    dc_conv_layer ds_conv;
    dc_bn_layer ds_bn;
    /* activations, CNHW, sized for max_batch */
    const float *x; /* block input (the previous block's out) */
    float *t[3];    /* conv outputs (BN inputs) */
    float *a[2];    /* relu(bn(t)) of the inner convs */
    float *ds_t;    /* shortcut conv output */
    float *ds_y;    /* shortcut BN output */
    float *out;     /* relu(bn_last(t_last) + shortcut) */
    int C_in, C_out, H_in, W_in, H_out, W_out;
    size_t param_begin; /* offset in the parameter slab of this block's first parameter */
} dc_block;

/* Per-layer-type timing, accumulated when net->profile is set (for bench/ and docs/PERFORMANCE.md). */
enum {
    DC_PROF_CONV_FWD,
    DC_PROF_CONV_BWD,
    DC_PROF_BN_FWD,
    DC_PROF_BN_BWD,
    DC_PROF_ELTWISE,
    DC_PROF_POOL,
    DC_PROF_FC,
    DC_PROF_LAYOUT,
    DC_PROF_COUNT
};
extern const char *const dc_prof_names[DC_PROF_COUNT];

/* Called during backward each time the gradients at slab offsets [begin, n_params) are final, in
 * decreasing `begin` order (for bucketed allreduce overlap, dist/). */
typedef void (*dc_grad_ready_fn)(void *ctx, size_t begin);

typedef struct dc_net {
    dc_net_desc desc;
    int cifar; /* CIFAR-style stem and widths */
    int feat_dim;

    /* slabs */
    float *params, *grads;
    size_t n_params;
    float *buffers; /* BN running mean/var */
    size_t n_buffers;
    int64_t *counters; /* num_batches_tracked, one per BN */
    int n_counters;

    dc_tensor *tensors; /* state_dict order */
    int n_tensors;
    size_t fc_param_begin; /* fc.weight, fc.bias are the last parameters: [fc_param_begin, n_params) */

    /* layers */
    dc_conv_layer stem_conv;
    dc_bn_layer stem_bn;
    int has_maxpool;
    dc_block *blocks;
    int n_blocks;
    float *fc_w, *fc_b, *fc_dw, *fc_db;

    /* activations (max_batch) */
    float *x_in; /* CNHW input */
    float *stem_t, *stem_a;
    float *pool_out; /* after max-pool (== stem_a when none) */
    int32_t *pool_argmax;
    int stem_h, stem_w, pool_h, pool_w;
    float *feat;   /* [N, feat_dim] pooled features */
    float *logits; /* [N, num_classes] */
    float *dfeat;
    float *scratch[5]; /* gradient scratch, each the size of the largest activation */
    size_t max_act;
    float *conv_ws;
    double *bn_scratch;

    /* options */
    dc_bn_reduce bn_reduce; /* sync-BN hook (NULL fn: per-rank statistics) */
    float bn_momentum, bn_eps;
    dc_grad_ready_fn grad_ready;
    void *grad_ready_ctx;
    int profile;
    double prof_seconds[DC_PROF_COUNT];
    double macs_per_image; /* forward multiply-accumulates (conv + fc) */
} dc_net;

/* Builds the network and allocates everything. Returns DC_FAIL with a message for an unknown arch, an input
 * too small for the strides, or out of memory. */
int dc_net_create(const dc_net_desc *desc, dc_net **out);
void dc_net_free(dc_net *net);

/* torchvision initialisation: Kaiming-normal (fan_out, relu) for convolutions, BN weight 1 / bias 0, running
 * stats 0 / 1, and PyTorch's default Linear init U(-1/sqrt(in), 1/sqrt(in)) for fc weight and bias. Each
 * tensor draws from its own counter-based stream keyed by (seed, tensor index). */
void dc_net_init(dc_net *net, uint64_t seed);

/* Re-initialises only the classifier (cRT) with PyTorch's default Linear init. */
void dc_net_init_fc(dc_net *net, uint64_t seed);

/* Forward pass on N <= max_batch images x [N, C, H, W] (NCHW, normalised floats). train != 0 uses batch
 * statistics and updates the running ones; train == 0 uses the running statistics. Fills net->feat and
 * net->logits. */
void dc_net_forward(dc_net *net, const float *x, int N, int train);

/* Backward from dlogits [N, num_classes] through the whole network after a training forward. Parameter
 * gradients ACCUMULATE into net->grads (zero them with dc_net_zero_grad). With backbone_frozen != 0 only the
 * fc gradients are computed. */
void dc_net_backward(dc_net *net, const float *dlogits, int N, int backbone_frozen);

void dc_net_zero_grad(dc_net *net);

/* Looks a tensor up by state_dict name (NULL when absent). */
dc_tensor *dc_net_find(dc_net *net, const char *name);

/* Prints the per-layer summary (darknet style: layer, shape, MACs) to stdout. */
void dc_net_print_summary(const dc_net *net);

#endif /* DC_NET_H */
