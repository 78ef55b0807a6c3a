/*
 * linear_head.c: the head object (head.h) and the cRT / LWS training loop on feature matrices.
 *
 * The head. One 64-byte aligned float slab per head:
 *
 *     W [C*D] | b [C] | scales [C] | offset [C] | mean [D] | c_sq [C] | c_mu [C]
 *
 * so W and b are contiguous (the cRT parameter vector is slab[0, C*D + C)), and a head travels between ranks
 * as its 8-int meta block plus the slab. Logits of the linear family are one GEMM (OpenBLAS, via
 * dc_linear_forward, so a LINEAR head gives bit-identical logits to the network's fc layer) followed by a
 * per-column affine map:
 *
 *     LINEAR     z = X W^T + b
 *     LWS        z = (X W^T + b) * s          (the reference: fc(x) * scales, so s also scales the bias)
 *     TAU_NORM   z = (X W^T) * ||W_j||^-tau  [+ b]   (W_j x / ||W_j||^tau = (W_j / ||W_j||^tau) x)
 *     LOGIT_ADJ  z = (X W^T + b) + offset,  offset_j = -tau log pi_j
 *
 * cRT / LWS training, one global step (the reference's stage 2 with a frozen backbone):
 *
 *   idx      = this rank's share of global batch `step` of the class-aware sampler (samplers/sampler.h)
 *   Xb, yb   = features (matrix rows or the feature-source callback) and labels of idx
 *   u        = Xb W^T + b                                   [b_loc, C]
 *   z        = u                 (cRT)       z = u * s     (LWS)
 *   loss     = sum_n CE(z_n + offset, y_n);  dz = (softmax(z + offset) - onehot(y)) / B   (B = GLOBAL batch)
 *   cRT:  dW = dz^T Xb,  db = sum_n dz_n          LWS:  ds_j = sum_n dz_nj u_nj
 *   g        = [grad | loss] summed over ranks by the reduce callback
 *   params  -= SGD(g, lr(epoch)) with momentum and L2 weight decay (core/optim.h, torch.optim.SGD semantics)
 *
 * Summing the per-rank gradients, each already scaled by 1/B, gives the gradient of the global-batch mean
 * loss, so R ranks execute exactly the single-process computation up to float summation order.
 * Everything is allocated by dc_head_trainer_create; a step allocates nothing.
 */
#include "head.h"

#include "core/check.h"
#include "core/layers.h"
#include "core/optim.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "core/schedule.h"
#include "samplers/sampler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define POST_PAR_MIN 65536 /* N*C below which the per-column pass runs on one thread */

/* ---- the head object ----------------------------------------------------------------------------------- */

static int slab_floats(int D, int C, size_t *out) {
    size_t cd;
    if (dc_mul_size((size_t)C, (size_t)D, &cd) != DC_OK) return DC_FAIL;
    size_t n = cd + 6 * (size_t)C + (size_t)D;
    if (n < cd) return DC_FAIL;
    size_t bytes;
    if (dc_mul_size(n, sizeof(float), &bytes) != DC_OK) return DC_FAIL;
    *out = n;
    return DC_OK;
}

static void set_views(dc_head *h) {
    const size_t cd = (size_t)h->C * (size_t)h->D;
    float *p = h->slab;
    h->W = p;
    p += cd;
    h->b = p;
    p += h->C;
    h->scales = p;
    p += h->C;
    h->offset = p;
    p += h->C;
    h->mean = p;
    p += h->D;
    h->c_sq = p;
    p += h->C;
    h->c_mu = p;
}

int dc_head_init(dc_head *h, dc_head_kind kind, int D, int C) {
    memset(h, 0, sizeof *h);
    if ((int)kind < 0 || (int)kind >= DC_HEAD_NUM_KINDS) return DC_ERR("head: unknown kind %d", (int)kind);
    if (D < 1) return DC_ERR("head: feature dimension D must be >= 1, got %d", D);
    if (C < 1) return DC_ERR("head: number of classes C must be >= 1, got %d", C);
    size_t n;
    if (slab_floats(D, C, &n) != DC_OK) return DC_ERR("head: C = %d x D = %d overflows the slab size", C, D);
    h->slab = dc_malloc_aligned(n * sizeof(float));
    if (!h->slab) return DC_FAIL;
    memset(h->slab, 0, n * sizeof(float));
    h->slab_len = n;
    h->kind = kind;
    h->D = D;
    h->C = C;
    h->feat_type = DC_NCM_UN;
    h->dist = DC_NCM_DIST_L2;
    set_views(h);
    for (int j = 0; j < C; j++) h->scales[j] = 1.0f;
    return DC_OK;
}

void dc_head_free(dc_head *h) {
    if (!h) return;
    dc_free_aligned(h->slab);
    memset(h, 0, sizeof *h);
}

int dc_head_copy(dc_head *dst, const dc_head *src) {
    DC_TRY(dc_head_init(dst, src->kind, src->D, src->C));
    float *slab = dst->slab;
    memcpy(slab, src->slab, src->slab_len * sizeof(float));
    *dst = *src;
    dst->slab = slab;
    set_views(dst);
    return DC_OK;
}

int dc_head_init_linear(dc_head *h, int D, int C, const float *W, const float *b) {
    DC_TRY(dc_head_init(h, DC_HEAD_KIND_LINEAR, D, C));
    if (W) memcpy(h->W, W, (size_t)C * D * sizeof(float));
    if (b) memcpy(h->b, b, (size_t)C * sizeof(float));
    h->has_bias = b != NULL;
    return DC_OK;
}

int dc_head_reset_linear(dc_head *h, uint64_t seed) {
    if (h->kind != DC_HEAD_KIND_LINEAR)
        return DC_ERR("head: reset_linear needs a linear head, got %s", dc_head_kind_name(h->kind));
    /* nn.Linear.reset_parameters: kaiming_uniform_(W, a=sqrt(5)) is U(-1/sqrt(fan_in), 1/sqrt(fan_in)), and
     * the bias is U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
    const double bound = 1.0 / sqrt((double)h->D);
    dc_rng rw = dc_rng_make(dc_rng_key(seed, DC_RNG_HEAD, 0, 0));
    for (size_t i = 0; i < (size_t)h->C * h->D; i++)
        h->W[i] = (float)((2.0 * dc_rng_uniform_d(&rw) - 1.0) * bound);
    dc_rng rb = dc_rng_make(dc_rng_key(seed, DC_RNG_HEAD, 0, 1));
    for (int j = 0; j < h->C; j++) h->b[j] = (float)((2.0 * dc_rng_uniform_d(&rb) - 1.0) * bound);
    h->has_bias = 1;
    return DC_OK;
}

int dc_head_init_lws(dc_head *h, const dc_head *joint) {
    if (joint->kind != DC_HEAD_KIND_LINEAR)
        return DC_ERR("head: LWS is built on the joint linear head, got %s", dc_head_kind_name(joint->kind));
    DC_TRY(dc_head_init(h, DC_HEAD_KIND_LWS, joint->D, joint->C));
    memcpy(h->W, joint->W, (size_t)joint->C * joint->D * sizeof(float));
    memcpy(h->b, joint->b, (size_t)joint->C * sizeof(float));
    h->has_bias = joint->has_bias;
    return DC_OK;
}

void dc_head_refresh(dc_head *h) {
    if (h->kind == DC_HEAD_KIND_TAU_NORM) {
        for (int j = 0; j < h->C; j++) {
            const float *w = h->W + (size_t)j * h->D;
            double ss = 0;
            for (int d = 0; d < h->D; d++) ss += (double)w[d] * w[d];
            double norm = sqrt(ss);
            /* a zero row gives 0 logits whatever the factor; 1 avoids 0^-tau = inf and inf * 0 = NaN */
            h->scales[j] = norm > 0 ? (float)pow(norm, -(double)h->tau) : 1.0f;
        }
    } else if (h->kind == DC_HEAD_KIND_NCM) {
        dc_ncm_refresh(h);
    }
}

void dc_head_affine_columns(float *z, int N, int C, const float *mul, const float *add) {
#pragma omp parallel for schedule(static) if ((int64_t)N * C >= POST_PAR_MIN)
    for (int n = 0; n < N; n++) {
        float *row = z + (size_t)n * C;
        if (mul && add)
            for (int j = 0; j < C; j++) row[j] = row[j] * mul[j] + add[j];
        else if (mul)
            for (int j = 0; j < C; j++) row[j] *= mul[j];
        else if (add)
            for (int j = 0; j < C; j++) row[j] += add[j];
    }
}

void dc_head_logits(const dc_head *h, const float *X, int N, float *logits) {
    if (N <= 0) return;
    const int D = h->D, C = h->C;
    const float *bias = h->has_bias ? h->b : NULL;
    switch (h->kind) {
    case DC_HEAD_KIND_LINEAR:
        dc_linear_forward(N, D, C, X, h->W, bias, logits);
        break;
    case DC_HEAD_KIND_LWS:
        dc_linear_forward(N, D, C, X, h->W, bias, logits);
        dc_head_affine_columns(logits, N, C, h->scales, NULL);
        break;
    case DC_HEAD_KIND_TAU_NORM:
        dc_linear_forward(N, D, C, X, h->W, NULL, logits);
        dc_head_affine_columns(logits, N, C, h->scales, bias);
        break;
    case DC_HEAD_KIND_LOGIT_ADJ:
        dc_linear_forward(N, D, C, X, h->W, bias, logits);
        dc_head_affine_columns(logits, N, C, NULL, h->offset);
        break;
    case DC_HEAD_KIND_NCM:
        dc_ncm_logits(h, X, N, logits);
        break;
    }
}

void dc_head_class_norms(const dc_head *h, double *out) {
    for (int j = 0; j < h->C; j++) {
        const float *w = h->W + (size_t)j * h->D;
        double ss = 0;
        for (int d = 0; d < h->D; d++) ss += (double)w[d] * w[d];
        double norm = sqrt(ss);
        if (h->kind == DC_HEAD_KIND_LWS || h->kind == DC_HEAD_KIND_TAU_NORM)
            norm *= fabs((double)h->scales[j]);
        out[j] = norm;
    }
}

const char *dc_head_kind_name(dc_head_kind k) {
    switch (k) {
    case DC_HEAD_KIND_LINEAR:
        return "linear";
    case DC_HEAD_KIND_LWS:
        return "lws";
    case DC_HEAD_KIND_TAU_NORM:
        return "tau_norm";
    case DC_HEAD_KIND_LOGIT_ADJ:
        return "logit_adj";
    case DC_HEAD_KIND_NCM:
        return "ncm";
    }
    return "unknown";
}

/* ---- serialisation ------------------------------------------------------------------------------------- */

void dc_head_meta(const dc_head *h, int32_t meta[DC_HEAD_META_LEN]) {
    int32_t tau_bits;
    memcpy(&tau_bits, &h->tau, sizeof tau_bits);
    meta[0] = DC_HEAD_FORMAT;
    meta[1] = (int32_t)h->kind;
    meta[2] = h->D;
    meta[3] = h->C;
    meta[4] = h->has_bias;
    meta[5] = (int32_t)h->feat_type;
    meta[6] = (int32_t)h->dist;
    meta[7] = tau_bits;
}

int dc_head_init_from_meta(dc_head *h, const int32_t meta[DC_HEAD_META_LEN]) {
    memset(h, 0, sizeof *h);
    if (meta[0] != DC_HEAD_FORMAT)
        return DC_ERR("head meta: format version %d, this build reads %d", meta[0], DC_HEAD_FORMAT);
    if (meta[4] != 0 && meta[4] != 1) return DC_ERR("head meta: has_bias must be 0 or 1, got %d", meta[4]);
    if (meta[5] < DC_NCM_UN || meta[5] > DC_NCM_CL2N)
        return DC_ERR("head meta: unknown feat_type %d", meta[5]);
    if (meta[6] < DC_NCM_DIST_L2 || meta[6] > DC_NCM_DIST_COS)
        return DC_ERR("head meta: unknown dist %d", meta[6]);
    DC_TRY(dc_head_init(h, (dc_head_kind)meta[1], meta[2], meta[3]));
    h->has_bias = meta[4];
    h->feat_type = (dc_ncm_feat)meta[5];
    h->dist = (dc_ncm_dist)meta[6];
    memcpy(&h->tau, &meta[7], sizeof h->tau);
    return DC_OK;
}

static dc_tensor view(const char *name, dc_dtype dt, int ndim, int64_t d0, int64_t d1, void *data) {
    dc_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.dtype = dt;
    t.ndim = ndim;
    t.shape[0] = d0;
    t.shape[1] = d1;
    dc_tensor_set_contiguous(&t);
    t.data = data;
    t.kind = DC_KIND_BUFFER;
    return t;
}

/* Which arrays a kind serialises. */
static int kind_has(dc_head_kind k, int has_bias, const char *what) {
    if (!strcmp(what, "weight")) return 1;
    if (!strcmp(what, "bias")) return k != DC_HEAD_KIND_NCM && has_bias;
    if (!strcmp(what, "scales")) return k == DC_HEAD_KIND_LWS;
    if (!strcmp(what, "offset")) return k == DC_HEAD_KIND_LOGIT_ADJ;
    if (!strcmp(what, "mean")) return k == DC_HEAD_KIND_NCM;
    return 0;
}

int dc_head_tensors(const dc_head *h, int32_t meta_storage[DC_HEAD_META_LEN],
                    dc_tensor out[DC_HEAD_MAX_TENSORS]) {
    int n = 0;
    dc_head_meta(h, meta_storage);
    out[n++] = view("head.meta", DC_I32, 1, DC_HEAD_META_LEN, 0, meta_storage);
    out[n++] = view("head.weight", DC_F32, 2, h->C, h->D, h->W);
    if (kind_has(h->kind, h->has_bias, "bias")) out[n++] = view("head.bias", DC_F32, 1, h->C, 0, h->b);
    if (kind_has(h->kind, h->has_bias, "scales"))
        out[n++] = view("head.scales", DC_F32, 1, h->C, 0, h->scales);
    if (kind_has(h->kind, h->has_bias, "offset"))
        out[n++] = view("head.offset", DC_F32, 1, h->C, 0, h->offset);
    if (kind_has(h->kind, h->has_bias, "mean")) out[n++] = view("head.mean", DC_F32, 1, h->D, 0, h->mean);
    return n;
}

static const dc_tensor *find_tensor(const dc_tensor *t, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (!strcmp(t[i].name, name)) return &t[i];
    return NULL;
}

static int take(const dc_tensor *t, int n, const char *what, const char *name, int64_t d0, int64_t d1,
                int ndim, float *dst) {
    const dc_tensor *x = find_tensor(t, n, name);
    if (!x) return DC_ERR("%s: tensor %s is missing", what, name);
    if (x->dtype != DC_F32) return DC_ERR("%s: tensor %s must be F32", what, name);
    if (x->ndim != ndim || x->shape[0] != d0 || (ndim == 2 && x->shape[1] != d1)) {
        char want[64];
        if (ndim == 2)
            snprintf(want, sizeof want, "[%lld, %lld]", (long long)d0, (long long)d1);
        else
            snprintf(want, sizeof want, "[%lld]", (long long)d0);
        return DC_ERR("%s: tensor %s has the wrong shape (expected %s for this head)", what, name, want);
    }
    memcpy(dst, x->data, (size_t)d0 * (ndim == 2 ? (size_t)d1 : 1) * sizeof(float));
    return DC_OK;
}

int dc_head_from_tensors(dc_head *h, const dc_tensor *t, int n, const char *what) {
    memset(h, 0, sizeof *h);
    const dc_tensor *m = find_tensor(t, n, "head.meta");
    if (!m) return DC_ERR("%s: tensor head.meta is missing (not a decouple head file?)", what);
    if (m->dtype != DC_I32 || m->ndim != 1 || m->shape[0] != DC_HEAD_META_LEN)
        return DC_ERR("%s: head.meta must be I32 [%d]", what, DC_HEAD_META_LEN);
    int32_t meta[DC_HEAD_META_LEN];
    memcpy(meta, m->data, sizeof meta);
    if (dc_head_init_from_meta(h, meta) != DC_OK) return dc_error_wrap("%s: ", what);
    static const char *names[] = {"weight", "bias", "scales", "offset", "mean"};
    /* every tensor must be one this kind stores, each at most once */
    for (int i = 0; i < n; i++) {
        int known = !strcmp(t[i].name, "head.meta");
        for (int k = 0; k < 5 && !known; k++)
            known = !strncmp(t[i].name, "head.", 5) && !strcmp(t[i].name + 5, names[k]) &&
                    kind_has(h->kind, h->has_bias, names[k]);
        for (int j = 0; j < i && known; j++)
            if (!strcmp(t[i].name, t[j].name)) known = 0;
        if (!known) {
            int rc = DC_ERR("%s: unexpected or duplicate tensor %s for a %s head", what, t[i].name,
                            dc_head_kind_name(h->kind));
            dc_head_free(h);
            return rc;
        }
    }
    for (int k = 0; k < 5; k++) {
        if (!kind_has(h->kind, h->has_bias, names[k])) continue;
        char full[32];
        snprintf(full, sizeof full, "head.%s", names[k]);
        float *dst = k == 0 ? h->W : k == 1 ? h->b : k == 2 ? h->scales : k == 3 ? h->offset : h->mean;
        int64_t d0 = k == 4 ? h->D : h->C;
        if (take(t, n, what, full, d0, h->D, k == 0 ? 2 : 1, dst) != DC_OK) {
            dc_head_free(h);
            return DC_FAIL;
        }
    }
    dc_head_refresh(h);
    return DC_OK;
}

int dc_head_save(const dc_head *h, const char *path) {
    int32_t meta[DC_HEAD_META_LEN];
    dc_tensor t[DC_HEAD_MAX_TENSORS];
    int n = dc_head_tensors(h, meta, t);
    const char *keys[] = {"decouple_head"};
    const char *vals[] = {dc_head_kind_name(h->kind)};
    return dc_safetensors_write(path, t, n, keys, vals, 1);
}

int dc_head_load(dc_head *h, const char *path) {
    memset(h, 0, sizeof *h);
    dc_st_file f;
    DC_TRY(dc_st_read(path, &f));
    dc_tensor t[DC_HEAD_MAX_TENSORS + 4];
    if (f.n_entries > DC_HEAD_MAX_TENSORS + 4) {
        dc_st_free(&f);
        return DC_ERR("%s: %d tensors, a head has at most %d", path, f.n_entries, DC_HEAD_MAX_TENSORS);
    }
    for (int i = 0; i < f.n_entries; i++) {
        const dc_st_entry *e = &f.entries[i];
        memset(&t[i], 0, sizeof t[i]);
        memcpy(t[i].name, e->name, sizeof t[i].name);
        t[i].dtype = e->dtype;
        t[i].ndim = e->ndim;
        for (int d = 0; d < e->ndim; d++) t[i].shape[d] = e->shape[d];
        dc_tensor_set_contiguous(&t[i]);
        t[i].data = f.data + e->begin;
    }
    int rc = dc_head_from_tensors(h, t, f.n_entries, path);
    dc_st_free(&f);
    return rc;
}

/* ---- cRT / LWS training -------------------------------------------------------------------------------- */

void dc_head_train_defaults(dc_head_train_opts *o) {
    memset(o, 0, sizeof *o);
    o->num_epochs = 10;
    o->batch_size = 512;
    o->lr = 0.2f;
    o->momentum = 0.9f;
    o->weight_decay = 5e-4f;
    o->sched.type = DC_SCHED_COSINE;
    o->sched.per_step = 0;
    o->sched.gamma = 0.1;
    o->endlr = 0.0;
    o->sampler.type = DC_SAMPLER_CLASS_AWARE;
    o->sampler.num_samples_cls = 4;
    o->sampler.q = 0.5;
    o->world_size = 1;
}

size_t dc_head_num_trainable(const dc_head *h) {
    if (h->kind == DC_HEAD_KIND_LINEAR) return (size_t)h->C * h->D + (size_t)h->C;
    if (h->kind == DC_HEAD_KIND_LWS) return (size_t)h->C;
    return 0;
}

struct dc_head_trainer {
    dc_head *h;
    dc_head_train_opts o;
    const int32_t *y;
    int64_t N;
    dc_sampler *sampler;
    int64_t steps_per_epoch, total_steps;
    int B, lb, D, C;
    size_t P;
    float *params; /* W|b (LINEAR, contiguous in the slab) or scales (LWS) */
    float *grad;   /* [P + 1]: gradient | loss sum */
    dc_sgd sgd;
    int64_t *idx; /* [lb] */
    int32_t *yb;  /* [lb] */
    float *Xb;    /* [lb, D] */
    float *u;     /* [lb, C]: X W^T + b */
    float *z;     /* [lb, C]: LWS logits */
    float *dz;    /* [lb, C] */
};

void dc_head_trainer_free(dc_head_trainer *t) {
    if (!t) return;
    dc_sampler_free(t->sampler);
    dc_free_aligned(t->grad);
    dc_sgd_free(&t->sgd);
    free(t->idx);
    free(t->yb);
    dc_free_aligned(t->Xb);
    dc_free_aligned(t->u);
    dc_free_aligned(t->z);
    dc_free_aligned(t->dz);
    free(t);
}

int dc_head_trainer_create(dc_head_trainer **out, dc_head *h, const dc_head_train_opts *o, const int32_t *y,
                           int64_t N) {
    *out = NULL;
    if (h->kind != DC_HEAD_KIND_LINEAR && h->kind != DC_HEAD_KIND_LWS)
        return DC_ERR("head training: only linear (cRT) and lws heads are trained, got %s",
                      dc_head_kind_name(h->kind));
    if (o->num_epochs < 1) return DC_ERR("head training: num_epochs must be >= 1, got %d", o->num_epochs);
    if (o->batch_size < 1) return DC_ERR("head training: batch_size must be >= 1, got %d", o->batch_size);
    if (o->world_size < 1 || o->rank < 0 || o->rank >= o->world_size)
        return DC_ERR("head training: rank %d is not in [0, world_size %d)", o->rank, o->world_size);
    if (o->batch_size % o->world_size)
        return DC_ERR("head training: batch_size %d is not divisible by the %d ranks", o->batch_size,
                      o->world_size);
    if (o->world_size > 1 && !o->reduce)
        return DC_ERR("head training: world_size %d needs a gradient reduce callback", o->world_size);
    if (!(o->lr >= 0) || !(o->momentum >= 0) || !(o->weight_decay >= 0))
        return DC_ERR("head training: lr, momentum and weight_decay must be >= 0");
    if (o->nesterov && o->momentum <= 0) return DC_ERR("head training: nesterov needs momentum > 0");
    if (N < 1) return DC_ERR("head training: no training samples");

    dc_head_trainer *t = dc_calloc(1, sizeof *t);
    if (!t) return DC_FAIL;
    t->h = h;
    t->o = *o;
    t->y = y;
    t->N = N;
    t->B = o->batch_size;
    t->lb = o->batch_size / o->world_size;
    t->D = h->D;
    t->C = h->C;
    t->P = dc_head_num_trainable(h);
    t->params = h->kind == DC_HEAD_KIND_LINEAR ? h->W : h->scales;

    const uint64_t sampler_seed = dc_rng_key(o->seed, DC_RNG_HEAD, 1, 0);
    if (dc_sampler_create(&o->sampler, y, N, h->C, sampler_seed, o->num_epochs, o->batch_size, o->world_size,
                          o->shuffle_in_batch, &t->sampler) != DC_OK) {
        dc_error_wrap("head training sampler: ");
        dc_head_trainer_free(t);
        return DC_FAIL;
    }
    t->steps_per_epoch = dc_sampler_steps_per_epoch(t->sampler);
    t->total_steps = t->steps_per_epoch * o->num_epochs;

    /* the optimizer: one group over the trainable vector (torch.optim.SGD over the classifier parameters) */
    memset(&t->sgd, 0, sizeof t->sgd);
    t->sgd.groups[0] = (dc_sgd_group){0, t->P, o->lr, o->momentum, o->weight_decay, 0};
    t->sgd.n_groups = 1;
    t->sgd.nesterov = o->nesterov;
    t->sgd.n_params = t->P;
    t->sgd.momentum_buf = dc_malloc_aligned(t->P * sizeof(float));
    t->sgd.no_decay = dc_calloc(t->P, 1);

    const size_t lbC = (size_t)t->lb * t->C;
    t->grad = dc_malloc_aligned((t->P + 1) * sizeof(float));
    t->idx = dc_malloc((size_t)t->lb * sizeof(int64_t));
    t->yb = dc_malloc((size_t)t->lb * sizeof(int32_t));
    t->Xb = dc_malloc_aligned((size_t)t->lb * t->D * sizeof(float));
    t->u = dc_malloc_aligned(lbC * sizeof(float));
    t->z = dc_malloc_aligned(lbC * sizeof(float));
    t->dz = dc_malloc_aligned(lbC * sizeof(float));
    if (!t->sgd.momentum_buf || !t->sgd.no_decay || !t->grad || !t->idx || !t->yb || !t->Xb || !t->u ||
        !t->z || !t->dz) {
        dc_head_trainer_free(t);
        return DC_FAIL;
    }
    memset(t->sgd.momentum_buf, 0, t->P * sizeof(float));
    memset(t->grad, 0, (t->P + 1) * sizeof(float));
    *out = t;
    return DC_OK;
}

int64_t dc_head_trainer_total_steps(const dc_head_trainer *t) {
    return t->total_steps;
}

float *dc_head_trainer_grad(dc_head_trainer *t) {
    return t->grad;
}

const int64_t *dc_head_trainer_batch(const dc_head_trainer *t, int *n) {
    if (n) *n = t->lb;
    return t->idx;
}

int dc_head_trainer_backward(dc_head_trainer *t, int64_t step, const float *X) {
    if (step < 0 || step >= t->total_steps)
        return DC_ERR("head training: step %lld outside [0, %lld)", (long long)step,
                      (long long)t->total_steps);
    int epoch = 0;
    DC_TRY(dc_sampler_rank_batch_at(t->sampler, step, t->o.rank, t->idx, &epoch));
    const int lb = t->lb, D = t->D, C = t->C;
    if (t->o.source) {
        if (t->o.source(t->o.source_ctx, t->idx, lb, epoch, t->Xb) != DC_OK)
            return dc_error_wrap("head training: feature source, epoch %d: ", epoch);
    } else {
        if (!X) return DC_ERR("head training: no feature matrix and no feature source");
        for (int i = 0; i < lb; i++)
            memcpy(t->Xb + (size_t)i * D, X + (size_t)t->idx[i] * D, (size_t)D * sizeof(float));
    }
    for (int i = 0; i < lb; i++) t->yb[i] = t->y[t->idx[i]];

    dc_head *h = t->h;
    const float *bias = h->has_bias ? h->b : NULL;
    const float gscale = 1.0f / (float)t->B;
    memset(t->grad, 0, (t->P + 1) * sizeof(float));
    dc_linear_forward(lb, D, C, t->Xb, h->W, bias, t->u);
    double loss;
    if (h->kind == DC_HEAD_KIND_LINEAR) {
        loss = dc_softmax_ce(lb, C, t->u, t->yb, t->o.loss_offset, gscale, t->dz);
        float *gW = t->grad, *gb = t->grad + (size_t)C * D;
        dc_linear_backward(lb, D, C, t->Xb, h->W, t->dz, NULL, gW, bias ? gb : NULL);
    } else {
        /* LWS: z = u * s;  dL/ds_j = sum_n dz_nj u_nj (rows summed in order, in double) */
        for (int n = 0; n < lb; n++)
            for (int j = 0; j < C; j++) t->z[(size_t)n * C + j] = t->u[(size_t)n * C + j] * h->scales[j];
        loss = dc_softmax_ce(lb, C, t->z, t->yb, t->o.loss_offset, gscale, t->dz);
        for (int j0 = 0; j0 < C; j0 += 64) {
            int jn = C - j0 < 64 ? C - j0 : 64;
            double acc[64] = {0};
            for (int n = 0; n < lb; n++) {
                const float *dzr = t->dz + (size_t)n * C + j0, *ur = t->u + (size_t)n * C + j0;
                for (int j = 0; j < jn; j++) acc[j] += (double)dzr[j] * (double)ur[j];
            }
            for (int j = 0; j < jn; j++) t->grad[j0 + j] = (float)acc[j];
        }
    }
    t->grad[t->P] = (float)loss;
    return DC_OK;
}

double dc_head_trainer_apply(dc_head_trainer *t, int64_t step) {
    const int epoch = (int)(step / t->steps_per_epoch);
    const int64_t in_epoch = step % t->steps_per_epoch;
    double lr =
        dc_lr_at(&t->o.sched, t->o.lr, t->o.endlr, t->o.num_epochs, epoch, in_epoch, t->steps_per_epoch);
    dc_sgd_step(&t->sgd, t->params, t->grad, &lr);
    return lr;
}

int dc_head_trainer_step(dc_head_trainer *t, int64_t step, const float *X, double *loss_sum_out) {
    DC_TRY(dc_head_trainer_backward(t, step, X));
    if (t->o.reduce) t->o.reduce(t->grad, t->P + 1, t->o.reduce_ctx);
    if (loss_sum_out) *loss_sum_out = t->grad[t->P];
    dc_head_trainer_apply(t, step);
    return DC_OK;
}

int dc_head_train(dc_head *h, const dc_head_train_opts *opts, const float *X, const int32_t *y, int64_t N) {
    if (!X && !opts->source) return DC_ERR("head training: no feature matrix and no feature source");
    dc_head_trainer *t;
    DC_TRY(dc_head_trainer_create(&t, h, opts, y, N));
    double epoch_loss = 0, lr = 0;
    int rc = DC_OK;
    for (int64_t step = 0; step < t->total_steps; step++) {
        double l = 0;
        if ((rc = dc_head_trainer_step(t, step, X, &l)) != DC_OK) break;
        epoch_loss += l;
        if ((step + 1) % t->steps_per_epoch == 0) {
            const int epoch = (int)(step / t->steps_per_epoch);
            const double mean = epoch_loss / ((double)t->steps_per_epoch * t->B);
            lr =
                dc_lr_at(&opts->sched, opts->lr, opts->endlr, opts->num_epochs, epoch, 0, t->steps_per_epoch);
            if (opts->epoch_loss) opts->epoch_loss[epoch] = mean;
            if (opts->on_epoch) opts->on_epoch(opts->hook_ctx, epoch, mean, lr);
            if (!isfinite(mean)) {
                rc = DC_ERR("head training: non-finite loss %g in epoch %d (lower the lr?)", mean, epoch);
                break;
            }
            epoch_loss = 0;
        }
    }
    dc_head_trainer_free(t);
    dc_head_refresh(h);
    return rc;
}
