/*
 * optim.c: SGD (see optim.h for the update rule).
 */
#include "optim.h"

#include "check.h"

#include <stdlib.h>
#include <string.h>

int dc_sgd_create_groups(dc_sgd *opt, size_t n_params, const dc_sgd_group *groups, int n_groups, int nesterov,
                         const uint8_t *no_decay) {
    memset(opt, 0, sizeof *opt);
    if (n_groups < 1 || n_groups > DC_OPT_MAX_GROUPS)
        return DC_ERR("optimizer: %d parameter groups (1..%d allowed)", n_groups, DC_OPT_MAX_GROUPS);
    for (int g = 0; g < n_groups; g++) {
        const dc_sgd_group *G = &groups[g];
        if (G->begin > G->end || G->end > n_params)
            return DC_ERR("optimizer: group %d range [%zu, %zu) outside the %zu parameters", g, G->begin,
                          G->end, n_params);
        if (nesterov && G->momentum <= 0)
            return DC_ERR("optimizer: nesterov momentum requires momentum > 0 (as torch.optim.SGD)");
        if (G->lr < 0 || G->momentum < 0 || G->weight_decay < 0)
            return DC_ERR("optimizer: group %d has a negative lr, momentum or weight decay", g);
        opt->groups[g] = *G;
    }
    opt->n_groups = n_groups;
    opt->n_params = n_params;
    opt->nesterov = nesterov;
    opt->no_decay_bn_bias = no_decay != NULL;
    opt->momentum_buf = dc_malloc_aligned((n_params ? n_params : 1) * sizeof(float));
    opt->no_decay = dc_calloc(n_params ? n_params : 1, 1);
    if (!opt->momentum_buf || !opt->no_decay) {
        dc_sgd_free(opt);
        return DC_FAIL;
    }
    memset(opt->momentum_buf, 0, n_params * sizeof(float));
    if (no_decay) memcpy(opt->no_decay, no_decay, n_params);
    return DC_OK;
}

int dc_sgd_create(dc_sgd *opt, const dc_net *net, float backbone_lr, float backbone_momentum,
                  float backbone_wd, float fc_lr, float fc_momentum, float fc_wd, int nesterov,
                  int no_decay_bn_bias) {
    dc_sgd_group groups[2] = {
        {0, net->fc_param_begin, backbone_lr, backbone_momentum, backbone_wd, 0},
        {net->fc_param_begin, net->n_params, fc_lr, fc_momentum, fc_wd, 0},
    };
    uint8_t *mask = NULL;
    if (no_decay_bn_bias) {
        mask = dc_calloc(net->n_params, 1);
        if (!mask) return DC_FAIL;
        for (int i = 0; i < net->n_tensors; i++) {
            const dc_tensor *t = &net->tensors[i];
            if (t->kind != DC_KIND_PARAM || !t->no_decay) continue;
            size_t off = (size_t)((const float *)t->data - net->params);
            memset(mask + off, 1, (size_t)dc_tensor_numel(t));
        }
    }
    int rc = dc_sgd_create_groups(opt, net->n_params, groups, 2, nesterov, mask);
    free(mask);
    return rc;
}

void dc_sgd_free(dc_sgd *opt) {
    free(opt->momentum_buf);
    free(opt->no_decay);
    opt->momentum_buf = NULL;
    opt->no_decay = NULL;
}

void dc_sgd_step(dc_sgd *opt, float *params, const float *grads, const double *group_lr) {
    const int first = (opt->step == 0);
    for (int gi = 0; gi < opt->n_groups; gi++) {
        const dc_sgd_group *g = &opt->groups[gi];
        if (g->frozen) continue;
        const float lr = (float)group_lr[gi], mom = g->momentum, wd = g->weight_decay;
        const int nesterov = opt->nesterov;
        const uint8_t *nd = opt->no_decay;
        float *buf = opt->momentum_buf;
#pragma omp parallel for simd schedule(static)
        for (size_t i = g->begin; i < g->end; i++) {
            float d = grads[i];
            if (wd != 0.0f && !nd[i]) d += wd * params[i];
            if (mom != 0.0f) {
                float b = first ? d : mom * buf[i] + d;
                buf[i] = b;
                d = nesterov ? d + mom * b : b;
            }
            params[i] -= lr * d;
        }
    }
    opt->step++;
}
