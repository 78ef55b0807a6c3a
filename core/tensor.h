/*
 * tensor.h: named views over the parameter, gradient and buffer slabs.
 *
 * The network owns three contiguous slabs (llm.c style): parameters, gradients (same size and order) and
 * buffers (BN running statistics). A dc_tensor is a view into one of them with a PyTorch state_dict name,
 * a shape and strides. Checkpoints, the optimizer and the allreduce walk these lists or the slabs whole.
 */
#ifndef DC_TENSOR_H
#define DC_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define DC_MAX_DIMS    4
#define DC_TENSOR_NAME 96

typedef enum { DC_F32 = 0, DC_I64 = 1, DC_I32 = 2, DC_U8 = 3 } dc_dtype;

typedef enum {
    DC_KIND_PARAM = 0, /* learnable: lives in the parameter slab, has a gradient at the same offset */
    DC_KIND_BUFFER = 1 /* running statistics and counters: saved, averaged across ranks, never trained */
} dc_tensor_kind;

typedef struct {
    char name[DC_TENSOR_NAME]; /* PyTorch state_dict name, e.g. "layer1.0.bn1.running_mean" */
    dc_dtype dtype;
    int ndim;
    int64_t shape[DC_MAX_DIMS];
    int64_t stride[DC_MAX_DIMS]; /* in elements; contiguous row-major for every slab tensor */
    void *data;
    void *grad; /* DC_KIND_PARAM: the matching view into the gradient slab; else NULL */
    dc_tensor_kind kind;
    int no_decay; /* BN affine parameters and biases (for the optional decay exemption) */
} dc_tensor;

static inline int64_t dc_tensor_numel(const dc_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

static inline size_t dc_dtype_size(dc_dtype d) {
    switch (d) {
    case DC_F32:
        return 4;
    case DC_I64:
        return 8;
    case DC_I32:
        return 4;
    case DC_U8:
        return 1;
    }
    return 0;
}

/* Sets contiguous row-major strides from the shape. */
static inline void dc_tensor_set_contiguous(dc_tensor *t) {
    int64_t s = 1;
    for (int i = t->ndim - 1; i >= 0; i--) {
        t->stride[i] = s;
        s *= t->shape[i];
    }
}

#endif /* DC_TENSOR_H */
