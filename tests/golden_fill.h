/*
 * golden_fill.h: the deterministic weight fill shared with tests/torch_models.py (fill_rule), so C and
 * PyTorch start golden comparisons from identical weights without shipping them. Every state_dict entry i
 * draws from its own counter-based stream dc_rng_key(seed, DC_RNG_INIT, i, 0): conv weights      U(-1, 1) *
 * sqrt(3 / fan_in) * 1.4 BN weight, var    U(0.5, 1.5) BN bias, mean, fc bias   (U - 0.5) * 0.2 fc weight
 * U(-1, 1) / sqrt(in)
 */
#ifndef DC_GOLDEN_FILL_H
#define DC_GOLDEN_FILL_H

#include "core/net.h"
#include "core/rng.h"

#include <math.h>
#include <string.h>

static inline int gf_ends(const char *s, const char *suf) {
    size_t n = strlen(s), m = strlen(suf);
    return n >= m && strcmp(s + n - m, suf) == 0;
}

static inline void golden_fill(dc_net *net, uint64_t seed) {
    for (int i = 0; i < net->n_tensors; i++) {
        dc_tensor *t = &net->tensors[i];
        if (t->dtype != DC_F32) continue;
        int64_t n = dc_tensor_numel(t);
        float *p = t->data;
        dc_rng r = dc_rng_make(dc_rng_key(seed, DC_RNG_INIT, (uint64_t)i, 0));
        if (t->ndim == 4) {
            float scale = (float)(sqrt(3.0 / (double)(t->shape[1] * t->shape[2] * t->shape[3])) * 1.4);
            for (int64_t k = 0; k < n; k++) {
                float u = dc_rng_uniform(&r);
                float v = u * 2.0f;
                v = v - 1.0f;
                p[k] = v * scale;
            }
        } else if (gf_ends(t->name, "running_var") || (gf_ends(t->name, ".weight") && t->ndim == 1)) {
            for (int64_t k = 0; k < n; k++) p[k] = dc_rng_uniform(&r) + 0.5f;
        } else if (gf_ends(t->name, "running_mean") || gf_ends(t->name, ".bias")) {
            for (int64_t k = 0; k < n; k++) p[k] = (dc_rng_uniform(&r) - 0.5f) * 0.2f;
        } else {
            float scale = (float)(1.0 / sqrt((double)t->shape[1]));
            for (int64_t k = 0; k < n; k++) {
                float v = dc_rng_uniform(&r) * 2.0f;
                v = v - 1.0f;
                p[k] = v * scale;
            }
        }
    }
}

#endif
