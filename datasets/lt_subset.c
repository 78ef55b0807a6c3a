/*
 * lt_subset.c: long-tailed subsets of a balanced training set, and the carved balanced validation split.
 *
 * Long-tailed profile (Cui et al. 2019, the LDAM code, BagofTricks-LT): with C classes, the largest class
 * n_max and imbalance factor r = n_max / n_min,
 *
 *     exponential:  n_c = floor(n_max * (1/r)^(c / (C - 1))),   c = 0 .. C-1
 *     step:         n_c = n_max for the first C - floor(C * minor_frac) classes, floor(n_max / r) after
 *
 * and class c keeps its FIRST n_c samples in file order. The reference computes
 * int(img_max * (1/r) ** (c / (C - 1.0))) in double precision; we evaluate the same expression with the same
 * operations (pow(1/r, c/(C-1)) in double, then truncation), which gives the published sizes exactly:
 * CIFAR-10 (n_max 5000) r = 10/50/100/200 -> 20431/13996/12406/11203 images, CIFAR-100 (n_max 500) ->
 * 19573/12608/10847/9502 (tests/test_lt_subset.c checks them). Selecting the first n_c, not a random n_c, is
 * what makes the subset seed-free and identical to the published lists.
 *
 * Carved validation split: the paper tunes on "a balanced val set sampled from train". For datasets without
 * one (CIFAR-LT, Fashion-MNIST, iNat where val is the reported set) we take val_per_class samples of every
 * class out of the (long-tailed) training set. Class c's choice is a partial Fisher-Yates shuffle of its
 * samples driven by dc_rng keyed by (seed, DC_RNG_SPLIT, c), so it depends on nothing but the seed, the class
 * and the class's sample list. A class with n_c <= val_per_class gives n_c - 1, so it keeps one training
 * sample (the sampler needs every class).
 */
#include "datasets/dataset.h"

#include "core/check.h"
#include "core/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int dc_lt_profile(dc_imb_type type, int num_classes, int64_t n_max, double imb_factor, double minor_frac,
                  int64_t *counts) {
    if (num_classes < 1) return DC_ERR("training_opt.num_classes: expected >= 1, got %d", num_classes);
    if (n_max < 1) return DC_ERR("long-tailed profile: the largest class has %lld samples", (long long)n_max);
    if (type == DC_IMB_NONE) {
        for (int c = 0; c < num_classes; c++) counts[c] = n_max;
        return DC_OK;
    }
    if (type != DC_IMB_EXP && type != DC_IMB_STEP)
        return DC_ERR("training_opt.imb_type: unknown profile %d", (int)type);
    if (!(imb_factor >= 1.0) || !isfinite(imb_factor))
        return DC_ERR("training_opt.imb_factor: expected r = n_max / n_min >= 1, got %g", imb_factor);
    const double inv_r = 1.0 / imb_factor;
    if (type == DC_IMB_EXP) {
        for (int c = 0; c < num_classes; c++) {
            /* The reference's expression, evaluated in the same order (see the file comment). */
            double share = num_classes > 1 ? pow(inv_r, (double)c / (num_classes - 1.0)) : 1.0;
            counts[c] = (int64_t)floor((double)n_max * share);
        }
    } else {
        if (!(minor_frac >= 0.0 && minor_frac <= 1.0))
            return DC_ERR("training_opt.step_minor_frac: expected a fraction in [0, 1], got %g", minor_frac);
        /* + 1e-9: C * frac must not lose a class to rounding (0.29 * 100 = 28.999999999999996). */
        int n_minor = (int)floor(num_classes * minor_frac + 1e-9);
        int n_major = num_classes - n_minor;
        for (int c = 0; c < num_classes; c++)
            counts[c] = c < n_major ? n_max : (int64_t)floor((double)n_max * inv_r);
    }
    for (int c = 0; c < num_classes; c++)
        if (counts[c] < 1)
            return DC_ERR("training_opt.imb_factor: r = %g leaves class %d with 0 samples (n_max = %lld); "
                          "r must be <= n_max",
                          imb_factor, c, (long long)n_max);
    return DC_OK;
}

int dc_lt_select(const int32_t *labels, int64_t n, int num_classes, const int64_t *keep, int64_t *selected,
                 int64_t *n_selected, int *short_classes) {
    int64_t *taken = dc_calloc((size_t)num_classes, sizeof(int64_t));
    if (!taken) return DC_FAIL;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) {
        int32_t c = labels[i];
        if (c < 0 || c >= num_classes) {
            free(taken);
            return DC_ERR("long-tailed subset: sample %lld has label %d outside [0, %d)", (long long)i, c,
                          num_classes);
        }
        if (taken[c] < keep[c]) {
            taken[c]++;
            selected[m++] = i;
        }
    }
    if (short_classes) {
        int s = 0;
        for (int c = 0; c < num_classes; c++) s += taken[c] < keep[c];
        *short_classes = s;
    }
    free(taken);
    *n_selected = m;
    return DC_OK;
}

int dc_carve_val(const int32_t *labels, int64_t n, int num_classes, int val_per_class, uint64_t seed,
                 int64_t *train_idx, int64_t *n_train, int64_t *val_idx, int64_t *n_val,
                 int *reduced_classes) {
    if (val_per_class < 0) return DC_ERR("training_opt.val_per_class: expected >= 0, got %d", val_per_class);
    if (num_classes < 1) return DC_ERR("training_opt.num_classes: expected >= 1, got %d", num_classes);
    /* Class members in order (counting sort): start[c] .. start[c+1] in `members`. */
    int64_t *start = dc_calloc((size_t)num_classes + 1, sizeof(int64_t));
    int64_t *members = dc_calloc((size_t)(n ? n : 1), sizeof(int64_t));
    unsigned char *is_val = dc_calloc((size_t)(n ? n : 1), 1);
    int64_t *fill = dc_calloc((size_t)num_classes, sizeof(int64_t));
    int rc = DC_FAIL;
    if (!start || !members || !is_val || !fill) goto done;
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] < 0 || labels[i] >= num_classes) {
            DC_ERR("val carve: sample %lld has label %d outside [0, %d)", (long long)i, labels[i],
                   num_classes);
            goto done;
        }
        start[labels[i] + 1]++;
    }
    for (int c = 0; c < num_classes; c++) start[c + 1] += start[c];
    for (int64_t i = 0; i < n; i++) members[start[labels[i]] + fill[labels[i]]++] = i;

    int reduced = 0;
    for (int c = 0; c < num_classes; c++) {
        int64_t *m = members + start[c];
        int64_t n_c = start[c + 1] - start[c];
        int64_t k = val_per_class;
        if (k > n_c - 1) k = n_c > 0 ? n_c - 1 : 0, reduced++;
        /* Partial Fisher-Yates: after j steps, m[0..j) is a uniform random j-subset of the class. */
        dc_rng r = dc_rng_make(dc_rng_key(seed, DC_RNG_SPLIT, (uint64_t)c, 0));
        for (int64_t j = 0; j < k; j++) {
            int64_t t = j + (int64_t)dc_rng_below(&r, (uint64_t)(n_c - j));
            int64_t tmp = m[j];
            m[j] = m[t];
            m[t] = tmp;
            is_val[m[j]] = 1;
        }
    }
    int64_t nt = 0, nv = 0;
    for (int64_t i = 0; i < n; i++) {
        if (is_val[i])
            val_idx[nv++] = i;
        else
            train_idx[nt++] = i;
    }
    *n_train = nt;
    *n_val = nv;
    if (reduced_classes) *reduced_classes = val_per_class > 0 ? reduced : 0;
    rc = DC_OK;
done:
    free(start);
    free(members);
    free(is_val);
    free(fill);
    return rc;
}
