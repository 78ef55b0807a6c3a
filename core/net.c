/*
 * net.c: building ResNets from a description, and their hand-written forward and backward passes.
 *
 * The builder runs twice (llm.c's "count, then point" pattern): a planning pass walks the architecture and
 * only advances three cursors (parameters, buffers, activations); then the slabs are allocated once and the
 * same walk runs again, this time pointing every layer's views into them. Nothing is allocated afterwards.
 *
 * The data path of one training step, all in CNHW (layout.h):
 *
 *   x[N,C,H,W] -> CNHW -> conv1 -> bn1+relu -> [maxpool] -> block ... block -> avgpool -> feat[N,D] -> fc
 *
 *   BasicBlock:   t0 = conv0(x); a0 = relu(bn0(t0)); t1 = conv1(a0); out = relu(bn1(t1) + shortcut(x))
 *   Bottleneck:   t0 = conv0(x) 1x1; a0 = relu(bn0(t0)); t1 = conv1(a0) 3x3 (stride, groups);
 *                 a1 = relu(bn1(t1)); t2 = conv2(a1) 1x1; out = relu(bn2(t2) + shortcut(x))
 *   shortcut(x) = x, or bn_ds(conv_ds(x)) (1x1, stride) when the shape changes.
 *
 * Backward reverses it. What each backward needs is exactly what forward kept: conv inputs (x, a*), BN inputs
 * (t*) with their saved mean/rstd, and ReLU outputs (a*, out) for the masks.
 */
#include "net.h"

#include "check.h"
#include "layout.h"
#include "rng.h"

#include <assert.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const dc_prof_names[DC_PROF_COUNT] = {"conv fwd", "conv bwd", "bn fwd",  "bn bwd",
                                                  "eltwise",  "pool",     "fc+loss", "layout"};

/* ---- architecture table ----------------------------------------------------------------------------------
 */

typedef struct {
    const char *name;
    int cifar; /* 3x3 stem, 16/32/64 widths, no max-pool */
    int bottleneck;
    int blocks[4];
    int n_stages;
    int groups, width_per_group;
} arch_spec;

static const arch_spec ARCHS[] = {
    {"resnet20", 1, 0, {3, 3, 3, 0}, 3, 1, 64},
    {"resnet32", 1, 0, {5, 5, 5, 0}, 3, 1, 64},
    {"resnet44", 1, 0, {7, 7, 7, 0}, 3, 1, 64},
    {"resnet56", 1, 0, {9, 9, 9, 0}, 3, 1, 64},
    {"resnet110", 1, 0, {18, 18, 18, 0}, 3, 1, 64},
    {"resnet8", 1, 0, {1, 1, 1, 0}, 3, 1, 64}, /* tiny: golden tests */
    {"resnet10", 0, 0, {1, 1, 1, 1}, 4, 1, 64},
    {"resnet18", 0, 0, {2, 2, 2, 2}, 4, 1, 64},
    {"resnet34", 0, 0, {3, 4, 6, 3}, 4, 1, 64},
    {"resnet50", 0, 1, {3, 4, 6, 3}, 4, 1, 64},
    {"resnet101", 0, 1, {3, 4, 23, 3}, 4, 1, 64},
    {"resnet152", 0, 1, {3, 8, 36, 3}, 4, 1, 64},
    {"resnext50_32x4d", 0, 1, {3, 4, 6, 3}, 4, 32, 4},
};

static const arch_spec *find_arch(const char *name) {
    for (size_t i = 0; i < sizeof ARCHS / sizeof ARCHS[0]; i++)
        if (strcmp(ARCHS[i].name, name) == 0) return &ARCHS[i];
    return NULL;
}

/* ---- the two-pass builder --------------------------------------------------------------------------------
 */

typedef struct {
    dc_net *net;
    int assign; /* 0: planning pass (count only), 1: point views into the slabs */
    size_t n_params, n_buffers, n_acts;
    int n_counters, n_tensors, n_blocks;
    size_t max_act;
    size_t max_ws;
    double macs;
    float *act_base;
    /* inference_only: the rotating activation buffers (see take_slot) */
    size_t slot_floats;
    float *slot_base;
} builder;

static float *take_act(builder *b, size_t n) {
    size_t off = b->n_acts;
    b->n_acts += (n + 15) & ~(size_t)15; /* 64-byte aligned sub-buffers */
    if (n > b->max_act) b->max_act = n;
    return b->assign ? b->act_base + off : NULL;
}

/* The four buffers a forward-only network rotates through. Within a block (basic or bottleneck) the conv
 * outputs t[k] go to SLOT_T and the post-ReLU a[k] to SLOT_A, alternately: each conv reads the other slot
 * than it writes, and t[k] is dead once bn has written a[k]. The shortcut conv runs after the main path
 * and reuses T/A the same way. Block outputs alternate between SLOT_X0 and SLOT_X1, so a block's input
 * (the previous output) survives until its residual add. */
enum { SLOT_X0, SLOT_X1, SLOT_T, SLOT_A, N_SLOTS };

/* An activation of n floats: its own region of the arena for training (backward needs every one), one of
 * the rotating slots for a forward-only network. */
static float *take_slot(builder *b, int slot, size_t n) {
    if (!b->net->desc.inference_only) return take_act(b, n);
    size_t rounded = (n + 15) & ~(size_t)15;
    if (rounded > b->slot_floats) b->slot_floats = rounded;
    if (n > b->max_act) b->max_act = n;
    return b->assign ? b->slot_base + (size_t)slot * b->slot_floats : NULL;
}

static void add_tensor(builder *b, const char *name, dc_tensor_kind kind, dc_dtype dtype, int ndim,
                       const int64_t *shape, int no_decay, void **data_out, void **grad_out) {
    int64_t numel = 1;
    for (int i = 0; i < ndim; i++) numel *= shape[i];
    void *data = NULL, *grad = NULL;
    if (b->assign) {
        dc_net *net = b->net;
        if (dtype == DC_I64)
            data = net->counters + b->n_counters;
        else if (kind == DC_KIND_PARAM) {
            data = net->params + b->n_params;
            grad = net->grads + b->n_params;
        } else
            data = net->buffers + b->n_buffers;
        dc_tensor *t = &net->tensors[b->n_tensors];
        memset(t, 0, sizeof *t);
        snprintf(t->name, sizeof t->name, "%s", name);
        t->dtype = dtype;
        t->ndim = ndim;
        for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
        dc_tensor_set_contiguous(t);
        t->data = data;
        t->grad = grad;
        t->kind = kind;
        t->no_decay = no_decay;
    }
    if (dtype == DC_I64)
        b->n_counters += (int)numel;
    else if (kind == DC_KIND_PARAM)
        b->n_params += (size_t)numel;
    else
        b->n_buffers += (size_t)numel;
    b->n_tensors++;
    if (data_out) *data_out = data;
    if (grad_out) *grad_out = grad;
}

static int add_conv(builder *b, dc_conv_layer *L, const char *name, int C_in, int C_out, int K, int stride,
                    int pad, int groups, int H, int W) {
    if (dc_conv_shape_init(&L->shape, C_in, C_out, K, K, stride, pad, groups, H, W) != DC_OK)
        return dc_error_wrap("layer %s (input %dx%d)", name, H, W);
    char full[DC_TENSOR_NAME];
    snprintf(full, sizeof full, "%s.weight", name);
    int64_t shape[4] = {C_out, C_in / groups, K, K};
    void *w, *dw;
    add_tensor(b, full, DC_KIND_PARAM, DC_F32, 4, shape, 0, &w, &dw);
    L->w = w;
    L->dw = dw;
    size_t ws = dc_conv_workspace_floats(&L->shape, b->net->desc.max_batch);
    if (ws > b->max_ws) b->max_ws = ws;
    b->macs += dc_conv_macs(&L->shape, 1);
    return DC_OK;
}

static void add_bn(builder *b, dc_bn_layer *L, const char *name, int C) {
    char full[DC_TENSOR_NAME];
    int64_t shape[1] = {C};
    void *p, *g;
    L->C = C;
    snprintf(full, sizeof full, "%s.weight", name);
    add_tensor(b, full, DC_KIND_PARAM, DC_F32, 1, shape, 1, &p, &g);
    L->gamma = p;
    L->dgamma = g;
    snprintf(full, sizeof full, "%s.bias", name);
    add_tensor(b, full, DC_KIND_PARAM, DC_F32, 1, shape, 1, &p, &g);
    L->beta = p;
    L->dbeta = g;
    snprintf(full, sizeof full, "%s.running_mean", name);
    add_tensor(b, full, DC_KIND_BUFFER, DC_F32, 1, shape, 1, &p, NULL);
    L->running_mean = p;
    snprintf(full, sizeof full, "%s.running_var", name);
    add_tensor(b, full, DC_KIND_BUFFER, DC_F32, 1, shape, 1, &p, NULL);
    L->running_var = p;
    snprintf(full, sizeof full, "%s.num_batches_tracked", name);
    add_tensor(b, full, DC_KIND_BUFFER, DC_I64, 0, shape, 1, &p, NULL);
    L->num_batches_tracked = p;
    /* saved statistics live with the activations */
    size_t off = b->n_acts;
    b->n_acts += ((size_t)2 * C + 15) & ~(size_t)15;
    L->save_mean = b->assign ? b->act_base + off : NULL;
    L->save_rstd = b->assign ? b->act_base + off + C : NULL;
}

static int build(builder *b, const arch_spec *a) {
    dc_net *net = b->net;
    const dc_net_desc *d = &net->desc;
    const int N = d->max_batch;
    int H = d->image_h, W = d->image_w, C;

    net->x_in = take_act(b, (size_t)N * d->in_channels * H * W);
    if (a->cifar) {
        C = 16;
        DC_TRY(add_conv(b, &net->stem_conv, "conv1", d->in_channels, C, 3, 1, 1, 1, H, W));
    } else {
        C = 64;
        DC_TRY(add_conv(b, &net->stem_conv, "conv1", d->in_channels, C, 7, 2, 3, 1, H, W));
    }
    add_bn(b, &net->stem_bn, "bn1", C);
    H = net->stem_conv.shape.H_out;
    W = net->stem_conv.shape.W_out;
    net->stem_h = H;
    net->stem_w = W;
    net->has_maxpool = !a->cifar;
    net->stem_t = take_slot(b, SLOT_T, (size_t)C * N * H * W);
    net->stem_a = take_slot(b, net->has_maxpool ? SLOT_A : SLOT_X0, (size_t)C * N * H * W);
    if (net->has_maxpool) {
        int OH = (H + 2 - 3) / 2 + 1, OW = (W + 2 - 3) / 2 + 1;
        if (H < 1 || W < 1 || OH < 1 || OW < 1)
            return DC_ERR("input %dx%d too small for the max-pool", d->image_h, d->image_w);
        net->pool_out = take_slot(b, SLOT_X0, (size_t)C * N * OH * OW);
        /* int32 argmax, the size of a float activation; a forward-only net puts it in SLOT_T (stem_t is dead
         * once bn1 has run) */
        net->pool_argmax = (int32_t *)take_slot(b, SLOT_T, (size_t)C * N * OH * OW);
        H = OH;
        W = OW;
    } else {
        net->pool_out = net->stem_a;
    }
    net->pool_h = H;
    net->pool_w = W;

    const int expansion = a->bottleneck ? 4 : 1;
    int bi = 0;
    for (int s = 0; s < a->n_stages; s++) {
        int planes = a->cifar ? (16 << s) : (64 << s);
        for (int k = 0; k < a->blocks[s]; k++, bi++) {
            dc_block *blk = b->assign ? &net->blocks[bi] : &(dc_block){0};
            int stride = (k == 0 && s > 0) ? 2 : 1;
            int C_out = planes * expansion;
            char name[DC_TENSOR_NAME];
            blk->bottleneck = a->bottleneck;
            blk->C_in = C;
            blk->C_out = C_out;
            blk->H_in = H;
            blk->W_in = W;
            blk->param_begin = b->n_params;
            if (a->bottleneck) {
                int width = planes * a->width_per_group / 64 * a->groups;
                snprintf(name, sizeof name, "layer%d.%d.conv1", s + 1, k);
                DC_TRY(add_conv(b, &blk->conv[0], name, C, width, 1, 1, 0, 1, H, W));
                snprintf(name, sizeof name, "layer%d.%d.bn1", s + 1, k);
                add_bn(b, &blk->bn[0], name, width);
                snprintf(name, sizeof name, "layer%d.%d.conv2", s + 1, k);
                DC_TRY(add_conv(b, &blk->conv[1], name, width, width, 3, stride, 1, a->groups, H, W));
                snprintf(name, sizeof name, "layer%d.%d.bn2", s + 1, k);
                add_bn(b, &blk->bn[1], name, width);
                int OH = blk->conv[1].shape.H_out, OW = blk->conv[1].shape.W_out;
                snprintf(name, sizeof name, "layer%d.%d.conv3", s + 1, k);
                DC_TRY(add_conv(b, &blk->conv[2], name, width, C_out, 1, 1, 0, 1, OH, OW));
                snprintf(name, sizeof name, "layer%d.%d.bn3", s + 1, k);
                add_bn(b, &blk->bn[2], name, C_out);
                blk->t[0] = take_slot(b, SLOT_T, (size_t)width * N * H * W);
                blk->a[0] = take_slot(b, SLOT_A, (size_t)width * N * H * W);
                blk->t[1] = take_slot(b, SLOT_T, (size_t)width * N * OH * OW);
                blk->a[1] = take_slot(b, SLOT_A, (size_t)width * N * OH * OW);
                blk->t[2] = take_slot(b, SLOT_T, (size_t)C_out * N * OH * OW);
                blk->H_out = OH;
                blk->W_out = OW;
            } else {
                snprintf(name, sizeof name, "layer%d.%d.conv1", s + 1, k);
                DC_TRY(add_conv(b, &blk->conv[0], name, C, planes, 3, stride, 1, 1, H, W));
                snprintf(name, sizeof name, "layer%d.%d.bn1", s + 1, k);
                add_bn(b, &blk->bn[0], name, planes);
                int OH = blk->conv[0].shape.H_out, OW = blk->conv[0].shape.W_out;
                snprintf(name, sizeof name, "layer%d.%d.conv2", s + 1, k);
                DC_TRY(add_conv(b, &blk->conv[1], name, planes, planes, 3, 1, 1, 1, OH, OW));
                snprintf(name, sizeof name, "layer%d.%d.bn2", s + 1, k);
                add_bn(b, &blk->bn[1], name, planes);
                blk->t[0] = take_slot(b, SLOT_T, (size_t)planes * N * OH * OW);
                blk->a[0] = take_slot(b, SLOT_A, (size_t)planes * N * OH * OW);
                blk->t[1] = take_slot(b, SLOT_T, (size_t)planes * N * OH * OW);
                blk->H_out = OH;
                blk->W_out = OW;
            }
            blk->has_downsample = (stride != 1 || C != C_out);
            if (blk->has_downsample) {
                snprintf(name, sizeof name, "layer%d.%d.downsample.0", s + 1, k);
                DC_TRY(add_conv(b, &blk->ds_conv, name, C, C_out, 1, stride, 0, 1, H, W));
                snprintf(name, sizeof name, "layer%d.%d.downsample.1", s + 1, k);
                add_bn(b, &blk->ds_bn, name, C_out);
                blk->ds_t = take_slot(b, SLOT_T, (size_t)C_out * N * blk->H_out * blk->W_out);
                blk->ds_y = take_slot(b, SLOT_A, (size_t)C_out * N * blk->H_out * blk->W_out);
            }
            /* block 0 reads pool_out (SLOT_X0) */
            blk->out = take_slot(b, bi % 2 ? SLOT_X0 : SLOT_X1, (size_t)C_out * N * blk->H_out * blk->W_out);
            C = C_out;
            H = blk->H_out;
            W = blk->W_out;
        }
    }
    b->n_blocks = bi;
    net->feat_dim = C;

    net->fc_param_begin = b->n_params;
    {
        int64_t wshape[2] = {d->num_classes, C}, bshape[1] = {d->num_classes};
        void *p, *g;
        add_tensor(b, "fc.weight", DC_KIND_PARAM, DC_F32, 2, wshape, 0, &p, &g);
        net->fc_w = p;
        net->fc_dw = g;
        add_tensor(b, "fc.bias", DC_KIND_PARAM, DC_F32, 1, bshape, 1, &p, &g);
        net->fc_b = p;
        net->fc_db = g;
        b->macs += (double)C * d->num_classes;
    }
    net->feat = take_act(b, (size_t)N * C);
    net->dfeat = take_act(b, (size_t)N * C);
    net->logits = take_act(b, (size_t)N * d->num_classes);
    return DC_OK;
}

int dc_net_create(const dc_net_desc *desc, dc_net **out) {
    *out = NULL;
    const arch_spec *a = find_arch(desc->arch);
    if (!a)
        return DC_ERR("unknown architecture '%s' (known: resnet20/32/44/56/110, resnet10/18/34/50/101/152, "
                      "resnext50_32x4d)",
                      desc->arch);
    if (desc->in_channels < 1 || desc->in_channels > 4)
        return DC_ERR("in_channels must be 1..4, got %d", desc->in_channels);
    if (desc->num_classes < 1) return DC_ERR("num_classes must be >= 1, got %d", desc->num_classes);
    if (desc->max_batch < 1) return DC_ERR("max_batch must be >= 1, got %d", desc->max_batch);
    if (desc->image_h < 1 || desc->image_w < 1)
        return DC_ERR("bad input size %dx%d", desc->image_h, desc->image_w);

    dc_net *net = dc_calloc(1, sizeof *net);
    if (!net) return DC_FAIL;
    net->desc = *desc;
    net->cifar = a->cifar;
    net->bn_momentum = 0.1f;
    net->bn_eps = 1e-5f;

    builder plan = {.net = net, .assign = 0};
    if (build(&plan, a) != DC_OK) {
        free(net);
        return DC_FAIL;
    }
    size_t max_act = plan.max_act;
    net->n_params = plan.n_params;
    net->n_buffers = plan.n_buffers;
    net->n_counters = plan.n_counters;
    net->n_tensors = plan.n_tensors;
    net->n_blocks = plan.n_blocks;
    net->max_act = max_act;
    net->macs_per_image = plan.macs;

    const int train = !desc->inference_only;
    net->params = dc_malloc_aligned(plan.n_params * sizeof(float));
    net->grads = train ? dc_malloc_aligned(plan.n_params * sizeof(float)) : NULL;
    net->buffers = dc_malloc_aligned((plan.n_buffers ? plan.n_buffers : 1) * sizeof(float));
    net->counters = dc_calloc((size_t)plan.n_counters + 1, sizeof(int64_t));
    net->tensors = dc_calloc((size_t)plan.n_tensors, sizeof(dc_tensor));
    net->blocks = dc_calloc((size_t)plan.n_blocks + 1, sizeof(dc_block));
    /* the arena: x_in, the saved BN statistics and the per-activation regions (training), then the rotating
     * slots (forward-only; slot_floats is 0 for training) */
    float *acts = dc_malloc_aligned((plan.n_acts + N_SLOTS * plan.slot_floats) * sizeof(float));
    if (train)
        for (int i = 0; i < 5; i++) net->scratch[i] = dc_malloc_aligned(max_act * sizeof(float));
    net->conv_ws = dc_malloc_aligned((plan.max_ws ? plan.max_ws : 1) * sizeof(float));
    int max_c = 2048;
    net->bn_scratch = dc_calloc((size_t)4 * max_c + 64, sizeof(double));
    int ok = net->params && (net->grads || !train) && net->buffers && net->counters && net->tensors &&
             net->blocks && acts && net->conv_ws && net->bn_scratch;
    for (int i = 0; i < 5; i++) ok = ok && (net->scratch[i] || !train);
    if (!ok) {
        free(acts);
        dc_net_free(net);
        return DC_ERR("out of memory building %s for batch %d", desc->arch, desc->max_batch);
    }
    builder real = {.net = net,
                    .assign = 1,
                    .act_base = acts,
                    .slot_floats = plan.slot_floats,
                    .slot_base = acts + plan.n_acts};
    if (build(&real, a) != DC_OK) { /* cannot fail after the planning pass succeeded; kept for safety */
        net->x_in = acts;
        dc_net_free(net);
        return DC_FAIL;
    }
    /* the activation arena begins with x_in (the first take_act): dc_net_free releases it there */
    if (net->grads) memset(net->grads, 0, net->n_params * sizeof(float));
    /* Link block inputs. */
    const float *prev = net->pool_out;
    for (int i = 0; i < net->n_blocks; i++) {
        net->blocks[i].x = prev;
        prev = net->blocks[i].out;
    }
    dc_net_init(net, 0);
    *out = net;
    return DC_OK;
}

void dc_net_free(dc_net *net) {
    if (!net) return;
    free(net->params);
    free(net->grads);
    free(net->buffers);
    free(net->counters);
    free(net->tensors);
    free(net->blocks);
    free(net->x_in); /* the activation arena begins with x_in */
    for (int i = 0; i < 5; i++) free(net->scratch[i]);
    free(net->conv_ws);
    free(net->bn_scratch);
    free(net);
}

/* ---- initialisation --------------------------------------------------------------------------------------
 */

static int is_suffix(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

static void init_linear(dc_net *net, uint64_t seed, int tensor_index_w) {
    /* PyTorch nn.Linear.reset_parameters: kaiming_uniform_(a=sqrt(5)) on W gives U(-1/sqrt(fan_in), +); the
     * bias is U(-1/sqrt(fan_in), 1/sqrt(fan_in)) too. */
    int D = net->feat_dim, K = net->desc.num_classes;
    double bound = 1.0 / sqrt((double)D);
    dc_rng rw = dc_rng_make(dc_rng_key(seed, DC_RNG_INIT, (uint64_t)tensor_index_w, 0));
    for (int i = 0; i < K * D; i++) net->fc_w[i] = (float)((2.0 * dc_rng_uniform_d(&rw) - 1.0) * bound);
    dc_rng rb = dc_rng_make(dc_rng_key(seed, DC_RNG_INIT, (uint64_t)tensor_index_w + 1, 0));
    for (int i = 0; i < K; i++) net->fc_b[i] = (float)((2.0 * dc_rng_uniform_d(&rb) - 1.0) * bound);
}

void dc_net_init(dc_net *net, uint64_t seed) {
    for (int ti = 0; ti < net->n_tensors; ti++) {
        dc_tensor *t = &net->tensors[ti];
        int64_t n = dc_tensor_numel(t);
        if (t->dtype == DC_I64) {
            memset(t->data, 0, (size_t)n * sizeof(int64_t));
        } else if (strcmp(t->name, "fc.weight") == 0) {
            init_linear(net, seed, ti);
        } else if (strcmp(t->name, "fc.bias") == 0) {
            /* drawn together with fc.weight */
        } else if (t->ndim == 4) {
            /* kaiming_normal_(mode='fan_out', nonlinearity='relu'): std = sqrt(2 / (C_out * KH * KW)) */
            double fan_out = (double)t->shape[0] * t->shape[2] * t->shape[3];
            double std = sqrt(2.0 / fan_out);
            dc_rng r = dc_rng_make(dc_rng_key(seed, DC_RNG_INIT, (uint64_t)ti, 0));
            float *w = t->data;
            for (int64_t i = 0; i < n; i++) w[i] = (float)(dc_rng_normal(&r) * std);
        } else {
            float v = (is_suffix(t->name, ".weight") || is_suffix(t->name, ".running_var")) ? 1.0f : 0.0f;
            float *p = t->data;
            for (int64_t i = 0; i < n; i++) p[i] = v;
        }
    }
}

void dc_net_init_fc(dc_net *net, uint64_t seed) {
    for (int ti = 0; ti < net->n_tensors; ti++)
        if (strcmp(net->tensors[ti].name, "fc.weight") == 0) init_linear(net, seed, ti);
}

void dc_net_zero_grad(dc_net *net) {
    if (net->grads) memset(net->grads, 0, net->n_params * sizeof(float));
}

dc_tensor *dc_net_find(dc_net *net, const char *name) {
    for (int i = 0; i < net->n_tensors; i++)
        if (strcmp(net->tensors[i].name, name) == 0) return &net->tensors[i];
    return NULL;
}

/* ---- forward ---------------------------------------------------------------------------------------------
 */

#define PROF_BEGIN(net) double prof_t0_ = (net)->profile ? omp_get_wtime() : 0
#define PROF_END(net, slot)                                                                                  \
    do {                                                                                                     \
        if ((net)->profile) (net)->prof_seconds[slot] += omp_get_wtime() - prof_t0_;                         \
    } while (0)

static void conv_fwd(dc_net *net, const dc_conv_layer *L, int N, const float *x, float *y) {
    PROF_BEGIN(net);
    dc_conv_forward(&L->shape, N, x, L->w, NULL, y, net->conv_ws);
    PROF_END(net, DC_PROF_CONV_FWD);
}

static void conv_bwd(dc_net *net, const dc_conv_layer *L, int N, const float *x, const float *dy, float *dx) {
    PROF_BEGIN(net);
    dc_conv_backward(&L->shape, N, x, L->w, dy, dx, L->dw, NULL, net->conv_ws);
    PROF_END(net, DC_PROF_CONV_BWD);
}

/* y = bn(x) (+relu), train or eval. M = N * H * W values per channel. */
static void bn_fwd(dc_net *net, dc_bn_layer *L, int64_t M, const float *x, float *y, int relu, int train) {
    PROF_BEGIN(net);
    if (train) {
        dc_bn_forward_train(L->C, M, x, L->gamma, L->beta, y, L->save_mean, L->save_rstd, L->running_mean,
                            L->running_var, net->bn_momentum, net->bn_eps, relu, &net->bn_reduce,
                            net->bn_scratch);
        (*L->num_batches_tracked)++;
    } else {
        dc_bn_forward_eval(L->C, M, x, L->gamma, L->beta, L->running_mean, L->running_var, net->bn_eps, relu,
                           y);
    }
    PROF_END(net, DC_PROF_BN_FWD);
}

static void bn_bwd(dc_net *net, dc_bn_layer *L, int64_t M, const float *x, const float *y, const float *dy,
                   int relu, float *dx) {
    PROF_BEGIN(net);
    dc_bn_backward(L->C, M, x, y, dy, L->gamma, L->save_mean, L->save_rstd, relu, dx, L->dgamma, L->dbeta,
                   &net->bn_reduce, net->bn_scratch);
    PROF_END(net, DC_PROF_BN_BWD);
}

static void block_forward(dc_net *net, dc_block *b, int N, int train) {
    const int64_t M_in = (int64_t)N * b->H_in * b->W_in, M_out = (int64_t)N * b->H_out * b->W_out;
    if (b->bottleneck) {
        conv_fwd(net, &b->conv[0], N, b->x, b->t[0]);
        bn_fwd(net, &b->bn[0], M_in, b->t[0], b->a[0], 1, train);
        conv_fwd(net, &b->conv[1], N, b->a[0], b->t[1]);
        bn_fwd(net, &b->bn[1], M_out, b->t[1], b->a[1], 1, train);
        conv_fwd(net, &b->conv[2], N, b->a[1], b->t[2]);
        bn_fwd(net, &b->bn[2], M_out, b->t[2], b->out, 0, train);
    } else {
        conv_fwd(net, &b->conv[0], N, b->x, b->t[0]);
        bn_fwd(net, &b->bn[0], M_out, b->t[0], b->a[0], 1, train);
        conv_fwd(net, &b->conv[1], N, b->a[0], b->t[1]);
        bn_fwd(net, &b->bn[1], M_out, b->t[1], b->out, 0, train);
    }
    const float *shortcut = b->x;
    if (b->has_downsample) {
        conv_fwd(net, &b->ds_conv, N, b->x, b->ds_t);
        bn_fwd(net, &b->ds_bn, M_out, b->ds_t, b->ds_y, 0, train);
        shortcut = b->ds_y;
    }
    PROF_BEGIN(net);
    dc_add_relu_forward((int64_t)b->C_out * M_out, b->out, shortcut, b->out);
    PROF_END(net, DC_PROF_ELTWISE);
}

void dc_net_forward(dc_net *net, const float *x, int N, int train) {
    const dc_net_desc *d = &net->desc;
    {
        PROF_BEGIN(net);
        dc_nchw_to_cnhw(x, net->x_in, N, d->in_channels, (int64_t)d->image_h * d->image_w);
        PROF_END(net, DC_PROF_LAYOUT);
    }
    const int64_t M_stem = (int64_t)N * net->stem_h * net->stem_w;
    conv_fwd(net, &net->stem_conv, N, net->x_in, net->stem_t);
    bn_fwd(net, &net->stem_bn, M_stem, net->stem_t, net->stem_a, 1, train);
    if (net->has_maxpool) {
        PROF_BEGIN(net);
        dc_maxpool_forward(net->stem_conv.shape.C_out, N, net->stem_h, net->stem_w, 3, 2, 1, net->stem_a,
                           net->pool_out, net->pool_argmax);
        PROF_END(net, DC_PROF_POOL);
    }
    for (int i = 0; i < net->n_blocks; i++) block_forward(net, &net->blocks[i], N, train);
    const dc_block *last = &net->blocks[net->n_blocks - 1];
    {
        PROF_BEGIN(net);
        dc_avgpool_forward(net->feat_dim, N, (int64_t)last->H_out * last->W_out, last->out, net->feat);
        PROF_END(net, DC_PROF_POOL);
    }
    {
        PROF_BEGIN(net);
        dc_linear_forward(N, net->feat_dim, d->num_classes, net->feat, net->fc_w, net->fc_b, net->logits);
        PROF_END(net, DC_PROF_FC);
    }
}

/* ---- backward --------------------------------------------------------------------------------------------
 */

/* g: dL/d(out), destroyed. dx: receives dL/d(x). s0..s2: scratch, each max_act floats. */
static void block_backward(dc_net *net, dc_block *b, int N, float *g, float *dx, float *s0, float *s1,
                           float *s2) {
    const int64_t M_in = (int64_t)N * b->H_in * b->W_in, M_out = (int64_t)N * b->H_out * b->W_out;
    const int64_t n_out = (int64_t)b->C_out * M_out;
    {
        /* out = relu(main + shortcut): both paths receive dy * (out > 0) */
        PROF_BEGIN(net);
        dc_relu_backward(n_out, b->out, g, g);
        PROF_END(net, DC_PROF_ELTWISE);
    }
    /* shortcut path first (it reads g, which the main path then overwrites in place) */
    if (b->has_downsample) {
        bn_bwd(net, &b->ds_bn, M_out, b->ds_t, NULL, g, 0, s0);
        conv_bwd(net, &b->ds_conv, N, b->x, s0, dx);
    } else {
        PROF_BEGIN(net);
        memcpy(dx, g, (size_t)n_out * sizeof(float));
        PROF_END(net, DC_PROF_ELTWISE);
    }
    /* main path */
    const int last = b->bottleneck ? 2 : 1;
    bn_bwd(net, &b->bn[last], M_out, b->t[last], NULL, g, 0, g);
    conv_bwd(net, &b->conv[last], N, b->a[last - 1], g, s1);
    for (int k = last - 1; k >= 0; k--) {
        /* s1 = dL/d(a[k]); through relu(bn(t[k])) */
        int64_t M = (b->bottleneck && k == 0) ? M_in : M_out;
        bn_bwd(net, &b->bn[k], M, b->t[k], b->a[k], s1, 1, s1);
        const float *conv_in = (k == 0) ? b->x : b->a[k - 1];
        conv_bwd(net, &b->conv[k], N, conv_in, s1, s2);
        float *t = s1;
        s1 = s2;
        s2 = t;
    }
    /* s1 now holds the main path's dL/dx */
    PROF_BEGIN(net);
    dc_add_forward((int64_t)b->C_in * M_in, dx, s1, dx);
    PROF_END(net, DC_PROF_ELTWISE);
}

void dc_net_backward(dc_net *net, const float *dlogits, int N, int backbone_frozen) {
    const dc_net_desc *d = &net->desc;
    assert(!d->inference_only && "dc_net_backward on a network built with inference_only");
    {
        PROF_BEGIN(net);
        dc_linear_backward(N, net->feat_dim, d->num_classes, net->feat, net->fc_w, dlogits,
                           backbone_frozen ? NULL : net->dfeat, net->fc_dw, net->fc_db);
        PROF_END(net, DC_PROF_FC);
    }
    if (net->grad_ready) net->grad_ready(net->grad_ready_ctx, net->fc_param_begin);
    if (backbone_frozen) return;

    float *g = net->scratch[0], *dx = net->scratch[1];
    const dc_block *last = &net->blocks[net->n_blocks - 1];
    {
        PROF_BEGIN(net);
        dc_avgpool_backward(net->feat_dim, N, (int64_t)last->H_out * last->W_out, net->dfeat, g);
        PROF_END(net, DC_PROF_POOL);
    }
    for (int i = net->n_blocks - 1; i >= 0; i--) {
        dc_block *b = &net->blocks[i];
        block_backward(net, b, N, g, dx, net->scratch[2], net->scratch[3], net->scratch[4]);
        float *t = g;
        g = dx;
        dx = t;
        if (net->grad_ready) net->grad_ready(net->grad_ready_ctx, b->param_begin);
    }
    /* g = dL/d(pool_out) */
    const int C = net->stem_conv.shape.C_out;
    const int64_t M_stem = (int64_t)N * net->stem_h * net->stem_w;
    float *ga = g;
    if (net->has_maxpool) {
        PROF_BEGIN(net);
        dc_maxpool_backward(C, N, net->stem_h, net->stem_w, 3, 2, 1, g, net->pool_argmax, dx);
        PROF_END(net, DC_PROF_POOL);
        ga = dx;
    }
    bn_bwd(net, &net->stem_bn, M_stem, net->stem_t, net->stem_a, ga, 1, ga);
    conv_bwd(net, &net->stem_conv, N, net->x_in, ga, NULL);
    if (net->grad_ready) net->grad_ready(net->grad_ready_ctx, 0);
}

/* ---- summary ---------------------------------------------------------------------------------------------
 */

static void print_conv(const char *name, const dc_conv_layer *L, int N) {
    const dc_conv_shape *s = &L->shape;
    printf("  %-26s %4d -> %4d  %dx%d/%d g%-2d  %4dx%-4d -> %4dx%-4d  %8.2f MMAC/img\n", name, s->C_in,
           s->C_out, s->KH, s->KW, s->stride, s->groups, s->H_in, s->W_in, s->H_out, s->W_out,
           dc_conv_macs(s, N) / 1e6);
}

void dc_net_print_summary(const dc_net *net) {
    printf("%s: %d blocks, %zu parameters, %zu buffer values, feature dim %d, %.1f MMAC per image forward\n",
           net->desc.arch, net->n_blocks, net->n_params, net->n_buffers, net->feat_dim,
           net->macs_per_image / 1e6);
    print_conv("conv1", &net->stem_conv, 1);
    if (net->has_maxpool) printf("  %-26s 3x3/2 -> %dx%d\n", "maxpool", net->pool_h, net->pool_w);
    for (int i = 0; i < net->n_blocks; i++) {
        const dc_block *b = &net->blocks[i];
        char name[64];
        int nconv = b->bottleneck ? 3 : 2;
        for (int k = 0; k < nconv; k++) {
            snprintf(name, sizeof name, "block%d.conv%d", i, k + 1);
            print_conv(name, &b->conv[k], 1);
        }
        if (b->has_downsample) {
            snprintf(name, sizeof name, "block%d.downsample", i);
            print_conv(name, &b->ds_conv, 1);
        }
    }
    printf("  %-26s %4d -> %4d\n", "fc", net->feat_dim, net->desc.num_classes);
}
