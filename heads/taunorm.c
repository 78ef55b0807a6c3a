/*
 * taunorm.c: tau-normalisation, post-hoc logit adjustment, and the tau sweep that picks tau on validation
 * features (head.h).
 *
 * tau-norm (Kang et al. 2020, Sec. 4; the reference's tau_norm.py): the joint classifier's rows are rescaled,
 *
 *     W~_j = W_j / ||W_j||^tau,        z_j = W~_j . x            (no bias: tau_norm.py drops it)
 *
 * tau = 0 is the joint classifier without its bias, tau = 1 the cosine-style classifier with unit rows. The
 * joint head's norms grow with class size (the paper's Figure), and dividing by ||W_j||^tau shrinks
 * head-class logits more than tail-class ones. We compute z_j = (W_j . x) * ||W_j||^-tau, i.e. one GEMM with
 * the untouched W and a per-column factor (mathematically identical; the sweep reuses one GEMM for all taus).
 * keep_bias adds b_j afterwards (BagofTricks-LT's variant).
 *
 * Post-hoc logit adjustment (Menon et al., ICLR 2021): z_j = W_j . x + b_j - tau log pi_j, pi_j = n_j / N
 * from the training counts; tau = 0 is exactly the joint classifier.
 *
 * The sweep: the reference prints a table for np.linspace(0, 2, 21) and leaves the choice to the reader;
 * we choose tau on VALIDATION features by the highest macro accuracy (mean of per-class accuracies), ties to
 * the higher micro top-1, then to the smaller tau, and keep the whole table (micro, macro, many/medium/few)
 * for the report. One GEMM per block of validation rows, then per tau an O(rows * C) affine map and the
 * per-class counters of heads/metrics.h. The counters are additive: shard the validation set over ranks and
 * sum dc_tau_sweep.counts before dc_tau_sweep_finish.
 *
 * The factor of tau is computed with tau rounded to float, the precision dc_head stores, so the sweep's
 * numbers at the chosen tau are exactly those of the head dc_tau_sweep_make_head returns.
 */
#include "head.h"

#include "core/check.h"
#include "core/layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define SWEEP_BLOCK 256

/* -tau log pi_j, the one formula both the head and the sweep use */
static float la_offset(float tau, double pi) {
    return (float)(-(double)tau * log(pi));
}

static float tau_factor(double norm, float tau) {
    return norm > 0 ? (float)pow(norm, -(double)tau) : 1.0f;
}

static int class_priors(const int64_t *counts, int C, double *pi_out) {
    double total = 0;
    for (int j = 0; j < C; j++) {
        if (counts[j] < 0) return DC_ERR("logit adjustment: train count of class %d is negative", j);
        total += (double)counts[j];
    }
    if (!(total > 0)) return DC_ERR("logit adjustment: the training class counts sum to 0");
    for (int j = 0; j < C; j++) pi_out[j] = counts[j] > 0 ? (double)counts[j] / total : 1e-12;
    return DC_OK;
}

int dc_head_init_tau_norm(dc_head *h, const dc_head *joint, float tau, int keep_bias) {
    if (joint->kind != DC_HEAD_KIND_LINEAR)
        return DC_ERR("tau-norm: needs the joint linear head, got %s", dc_head_kind_name(joint->kind));
    if (!isfinite(tau)) return DC_ERR("tau-norm: tau must be finite");
    DC_TRY(dc_head_init(h, DC_HEAD_KIND_TAU_NORM, joint->D, joint->C));
    memcpy(h->W, joint->W, (size_t)joint->C * joint->D * sizeof(float));
    memcpy(h->b, joint->b, (size_t)joint->C * sizeof(float));
    h->has_bias = keep_bias && joint->has_bias;
    if (!h->has_bias) memset(h->b, 0, (size_t)h->C * sizeof(float));
    h->tau = tau;
    dc_head_refresh(h);
    return DC_OK;
}

int dc_head_init_logit_adj(dc_head *h, const dc_head *joint, const int64_t *train_counts, float tau) {
    if (joint->kind != DC_HEAD_KIND_LINEAR)
        return DC_ERR("logit adjustment: needs the joint linear head, got %s",
                      dc_head_kind_name(joint->kind));
    if (!isfinite(tau)) return DC_ERR("logit adjustment: tau must be finite");
    double *pi = dc_malloc((size_t)joint->C * sizeof(double));
    if (!pi) return DC_FAIL;
    if (class_priors(train_counts, joint->C, pi) != DC_OK) {
        free(pi);
        memset(h, 0, sizeof *h);
        return DC_FAIL;
    }
    int rc = dc_head_init(h, DC_HEAD_KIND_LOGIT_ADJ, joint->D, joint->C);
    if (rc == DC_OK) {
        memcpy(h->W, joint->W, (size_t)joint->C * joint->D * sizeof(float));
        memcpy(h->b, joint->b, (size_t)joint->C * sizeof(float));
        h->has_bias = joint->has_bias;
        h->tau = tau;
        for (int j = 0; j < h->C; j++) h->offset[j] = la_offset(tau, pi[j]);
    }
    free(pi);
    return rc;
}

/* ---- the sweep ----------------------------------------------------------------------------------------- */

int dc_tau_grid_default(double taus[DC_TAU_MAX]) {
    /* numpy.linspace(0, 2, 21): start + i * step with step = (stop - start) / (num - 1) */
    const double step = 2.0 / 20.0;
    for (int i = 0; i < 21; i++) taus[i] = (double)i * step;
    return 21;
}

void dc_tau_sweep_free(dc_tau_sweep *sw) {
    free(sw->counts);
    free(sw->col_scale);
    free(sw->col_add);
    dc_free_aligned(sw->raw);
    dc_free_aligned(sw->z);
    memset(sw, 0, sizeof *sw);
}

int dc_tau_sweep_init(dc_tau_sweep *sw, dc_sweep_family family, const dc_head *joint,
                      const int64_t *train_counts, const double *taus, int n_taus, int keep_bias) {
    memset(sw, 0, sizeof *sw);
    if (family != DC_SWEEP_TAU_NORM && family != DC_SWEEP_LOGIT_ADJ)
        return DC_ERR("tau sweep: unknown family %d", (int)family);
    if (joint->kind != DC_HEAD_KIND_LINEAR)
        return DC_ERR("tau sweep: needs the joint linear head, got %s", dc_head_kind_name(joint->kind));
    if (taus) {
        if (n_taus < 1 || n_taus > DC_TAU_MAX)
            return DC_ERR("tau sweep: %d taus, expected 1..%d", n_taus, DC_TAU_MAX);
        for (int k = 0; k < n_taus; k++) {
            if (!isfinite(taus[k])) return DC_ERR("tau sweep: tau[%d] is not finite", k);
            sw->taus[k] = taus[k];
        }
        sw->n_taus = n_taus;
    } else {
        sw->n_taus = dc_tau_grid_default(sw->taus);
    }
    const int C = joint->C, K = sw->n_taus;
    sw->family = family;
    sw->keep_bias = keep_bias;
    sw->C = C;
    sw->D = joint->D;
    sw->joint = joint;
    sw->block_rows = SWEEP_BLOCK;
    sw->counts = dc_calloc((size_t)K * 3 * C, sizeof(int64_t));
    sw->col_scale = dc_malloc((size_t)K * C * sizeof(float));
    sw->col_add = dc_malloc((size_t)K * C * sizeof(float));
    sw->raw = dc_malloc_aligned((size_t)SWEEP_BLOCK * C * sizeof(float));
    sw->z = dc_malloc_aligned((size_t)SWEEP_BLOCK * C * sizeof(float));
    double *aux = dc_malloc((size_t)C * sizeof(double));
    if (!sw->counts || !sw->col_scale || !sw->col_add || !sw->raw || !sw->z || !aux) {
        free(aux);
        dc_tau_sweep_free(sw);
        return DC_FAIL;
    }
    for (int k = 0; k < K; k++) {
        dc_metrics *m = &sw->m[k];
        m->num_classes = C;
        m->buf = sw->counts + (size_t)k * 3 * C;
        m->count = m->buf;
        m->correct1 = m->buf + C;
        m->correct5 = m->buf + 2 * (size_t)C;
    }
    if (family == DC_SWEEP_TAU_NORM) {
        dc_head_class_norms(joint, aux);
        const int bias = keep_bias && joint->has_bias;
        for (int k = 0; k < K; k++)
            for (int j = 0; j < C; j++) {
                sw->col_scale[(size_t)k * C + j] = tau_factor(aux[j], (float)sw->taus[k]);
                sw->col_add[(size_t)k * C + j] = bias ? joint->b[j] : 0.0f;
            }
    } else {
        if (class_priors(train_counts, C, aux) != DC_OK) {
            free(aux);
            dc_tau_sweep_free(sw);
            return DC_FAIL;
        }
        for (int k = 0; k < K; k++)
            for (int j = 0; j < C; j++) {
                sw->col_scale[(size_t)k * C + j] = 1.0f;
                sw->col_add[(size_t)k * C + j] = la_offset((float)sw->taus[k], aux[j]);
            }
    }
    free(aux);
    return DC_OK;
}

void dc_tau_sweep_add(dc_tau_sweep *sw, const float *X, const int32_t *y, int N) {
    const dc_head *j = sw->joint;
    const int C = sw->C, D = sw->D;
    const int tau_norm = sw->family == DC_SWEEP_TAU_NORM;
    const int keep = tau_norm && sw->keep_bias && j->has_bias;
    /* tau-norm: raw = X W^T; logit adjustment: raw = X W^T + b (exactly as dc_head_logits forms them) */
    const float *gemm_bias = tau_norm ? NULL : (j->has_bias ? j->b : NULL);
    for (int n0 = 0; n0 < N; n0 += sw->block_rows) {
        const int rows = N - n0 < sw->block_rows ? N - n0 : sw->block_rows;
        dc_linear_forward(rows, D, C, X + (size_t)n0 * D, j->W, gemm_bias, sw->raw);
        for (int k = 0; k < sw->n_taus; k++) {
            memcpy(sw->z, sw->raw, (size_t)rows * C * sizeof(float));
            const float *mul = tau_norm ? sw->col_scale + (size_t)k * C : NULL;
            const float *add = (!tau_norm || keep) ? sw->col_add + (size_t)k * C : NULL;
            dc_head_affine_columns(sw->z, rows, C, mul, add);
            dc_metrics_add(&sw->m[k], sw->z, y + n0, rows);
        }
    }
}

void dc_tau_sweep_finish(dc_tau_sweep *sw, const int64_t *train_counts) {
    sw->best = 0;
    int have = 0;
    for (int k = 0; k < sw->n_taus; k++) {
        dc_tau_row *r = &sw->rows[k];
        r->tau = sw->taus[k];
        dc_metrics_summarize(&sw->m[k], train_counts, &r->s);
        if (!isfinite(r->s.macro_top1)) continue;
        if (!have) {
            sw->best = k;
            have = 1;
            continue;
        }
        const dc_tau_row *b = &sw->rows[sw->best];
        int better = r->s.macro_top1 > b->s.macro_top1;
        if (r->s.macro_top1 == b->s.macro_top1) {
            if (r->s.top1 > b->s.top1)
                better = 1;
            else if (r->s.top1 == b->s.top1 && r->tau < b->tau)
                better = 1;
        }
        if (better) sw->best = k;
    }
}

double dc_tau_sweep_best_tau(const dc_tau_sweep *sw) {
    return sw->taus[sw->best];
}

int dc_tau_sweep_make_head(const dc_tau_sweep *sw, const int64_t *train_counts, double tau, dc_head *out) {
    if (sw->family == DC_SWEEP_TAU_NORM)
        return dc_head_init_tau_norm(out, sw->joint, (float)tau, sw->keep_bias);
    return dc_head_init_logit_adj(out, sw->joint, train_counts, (float)tau);
}

int dc_tau_sweep_write_json(const dc_tau_sweep *sw, dc_json_writer *w) {
    dc_json_object_begin(w);
    dc_json_kv_string(w, "family", sw->family == DC_SWEEP_TAU_NORM ? "tau_norm" : "logit_adj");
    dc_json_kv_string(w, "criterion",
                      "max validation macro top-1; ties: higher micro top-1, then smaller tau");
    if (sw->family == DC_SWEEP_TAU_NORM) dc_json_kv_bool(w, "keep_bias", sw->keep_bias);
    dc_json_kv_double(w, "chosen_tau", sw->taus[sw->best]);
    dc_json_key(w, "table");
    dc_json_array_begin(w);
    for (int k = 0; k < sw->n_taus; k++) {
        const dc_tau_row *r = &sw->rows[k];
        dc_json_object_begin(w);
        dc_json_kv_double(w, "tau", r->tau);
        dc_json_kv_double(w, "top1", r->s.top1);
        dc_json_kv_double(w, "macro", r->s.macro_top1);
        dc_json_kv_double(w, "many", r->s.many);
        dc_json_kv_double(w, "medium", r->s.medium);
        dc_json_kv_double(w, "few", r->s.few);
        dc_json_object_end(w);
    }
    dc_json_array_end(w);
    return dc_json_object_end(w);
}
