/*
 * optim.h: SGD with momentum, weight decay and Nesterov, with PyTorch's semantics (torch.optim.SGD, dampening
 * 0):
 *
 *     g   = grad + weight_decay * p                (decay added to the gradient, "L2", not decoupled)
 *     buf = g                      on the first step
 *     buf = momentum * buf + g     afterwards
 *     g   = g + momentum * buf     if nesterov, else g = buf
 *     p  -= lr * g
 *
 * Parameters form groups (the reference has one SGD param group per network: feat_model and classifier, each
 * with its own lr / momentum / weight_decay). A group is a contiguous range of the parameter slab, so the
 * momentum buffer is one more slab of the same size, checkpointed whole.
 */
#ifndef DC_OPTIM_H
#define DC_OPTIM_H

#include "net.h"

#include <stddef.h>
#include <stdint.h>

#define DC_OPT_MAX_GROUPS 4

typedef struct {
    size_t begin, end; /* [begin, end) of the parameter slab */
    float lr;          /* base lr; the schedule multiplies it */
    float momentum;
    float weight_decay;
    int frozen; /* no update at all (stage 2 backbone) */
} dc_sgd_group;

typedef struct {
    dc_sgd_group groups[DC_OPT_MAX_GROUPS];
    int n_groups;
    int nesterov;
    int no_decay_bn_bias;
    float *momentum_buf; /* slab of n_params */
    uint8_t *no_decay;   /* per parameter: 1 for BN affine / bias when no_decay_bn_bias */
    size_t n_params;
    int64_t step; /* number of updates done (buf initialisation on the first) */
} dc_sgd;

/* Creates an optimizer over n_params parameters with the given groups (ranges must lie in [0, n_params)).
 * no_decay (nullable): per-parameter 1 where weight decay is skipped; copied. */
int dc_sgd_create_groups(dc_sgd *opt, size_t n_params, const dc_sgd_group *groups, int n_groups, int nesterov,
                         const uint8_t *no_decay);

/* Creates the optimizer for a network with two groups: backbone [0, fc_param_begin) and classifier
 * [fc_param_begin, n_params). */
int dc_sgd_create(dc_sgd *opt, const dc_net *net, float backbone_lr, float backbone_momentum,
                  float backbone_wd, float fc_lr, float fc_momentum, float fc_wd, int nesterov,
                  int no_decay_bn_bias);
void dc_sgd_free(dc_sgd *opt);

/* One update; group_lr[g] is the learning rate of group g for this step (the schedule's value). */
void dc_sgd_step(dc_sgd *opt, float *params, const float *grads, const double *group_lr);

#endif
