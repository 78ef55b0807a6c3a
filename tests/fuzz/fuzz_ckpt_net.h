/*
 * fuzz_ckpt_net.h: a tiny stand-in network for the checkpoint fuzz target and its seed generator.
 *
 * dc_ckpt_write / dc_ckpt_load only look at the tensor list, the three slabs, the architecture name and the
 * class count of a dc_net, so a hand-built net with five tensors (an fc layer and one BN's buffers) exercises
 * every code path of the checkpoint reader while keeping each checkpoint file under 2 KB, which keeps the
 * fuzzer fast and the committed seed corpus small. A real ResNet-8 checkpoint is 300 KB.
 */
#ifndef DC_FUZZ_CKPT_NET_H
#define DC_FUZZ_CKPT_NET_H

#include "core/net.h"
#include "core/optim.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    dc_net net;
    float params[8]; /* fc.weight [2, 3], fc.bias [2] */
    float grads[8];
    float buffers[4]; /* bn.running_mean [2], bn.running_var [2] */
    int64_t counters[1];
    dc_tensor tensors[5];
    float momentum[8];
    dc_sgd sgd;
} fuzz_net;

static inline void fuzz_tensor(dc_tensor *t, const char *name, dc_dtype dtype, int ndim, int64_t d0,
                               int64_t d1, void *data, void *grad, dc_tensor_kind kind) {
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dtype;
    t->ndim = ndim;
    t->shape[0] = d0;
    t->shape[1] = d1;
    dc_tensor_set_contiguous(t);
    t->data = data;
    t->grad = grad;
    t->kind = kind;
}

/* Builds the net (pointers into *f itself, so f must not move afterwards) with values from `seed`. */
static inline void fuzz_net_init(fuzz_net *f, int seed) {
    memset(f, 0, sizeof *f);
    for (int i = 0; i < 8; i++) f->params[i] = 0.25f * (float)(i + seed) - 1.0f;
    for (int i = 0; i < 8; i++) f->momentum[i] = 0.01f * (float)(i * seed);
    f->buffers[0] = 0.1f, f->buffers[1] = -0.2f, f->buffers[2] = 1.0f, f->buffers[3] = 0.5f;
    f->counters[0] = 7 + seed;
    dc_tensor *t = f->tensors;
    fuzz_tensor(&t[0], "fc.weight", DC_F32, 2, 2, 3, f->params, f->grads, DC_KIND_PARAM);
    fuzz_tensor(&t[1], "fc.bias", DC_F32, 1, 2, 0, f->params + 6, f->grads + 6, DC_KIND_PARAM);
    fuzz_tensor(&t[2], "bn.running_mean", DC_F32, 1, 2, 0, f->buffers, NULL, DC_KIND_BUFFER);
    fuzz_tensor(&t[3], "bn.running_var", DC_F32, 1, 2, 0, f->buffers + 2, NULL, DC_KIND_BUFFER);
    fuzz_tensor(&t[4], "bn.num_batches_tracked", DC_I64, 0, 0, 0, f->counters, NULL, DC_KIND_BUFFER);
    dc_net *n = &f->net;
    snprintf(n->desc.arch, sizeof n->desc.arch, "fuzznet");
    n->desc.in_channels = 3;
    n->desc.num_classes = 2;
    n->feat_dim = 3;
    n->params = f->params;
    n->grads = f->grads;
    n->n_params = 8;
    n->buffers = f->buffers;
    n->n_buffers = 4;
    n->counters = f->counters;
    n->n_counters = 1;
    n->tensors = t;
    n->n_tensors = 5;
    n->fc_param_begin = 0;
    f->sgd.momentum_buf = f->momentum;
    f->sgd.n_params = 8;
    f->sgd.step = 3 + seed;
}

#endif /* DC_FUZZ_CKPT_NET_H */
