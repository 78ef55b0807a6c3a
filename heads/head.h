/*
 * head.h: the stage-2 classifier heads of Kang et al. (ICLR 2020), "Decoupling Representation and Classifier
 * for Long-Tailed Recognition", as a library that works on feature matrices.
 *
 * Stage 1 trains a backbone f and a joint linear classifier. Stage 2 freezes f and re-balances only the
 * classifier. Everything here sees features, never images:
 *
 *   X      float32 [N, D] row-major, the pooled backbone features (one row per sample)
 *   y      int32 [N], labels in [0, C)
 *   counts int64 [C], the TRAINING class counts n_j (shot split, priors pi_j = n_j / sum n)
 *
 * A fitted head maps X to logits [N, C] (dc_head_logits). The kinds, with the reference's semantics
 * (facebookresearch/classifier-balancing; docs/HEADS.md has the details and every difference):
 *
 *   LINEAR     z_j = W_j . x + b_j                         joint classifier, cRT (re-initialised, re-trained)
 *   LWS        z_j = s_j (W_j . x + b_j)                   W, b frozen from the joint head, s learned (init
 * 1) TAU_NORM   z_j = W_j . x / ||W_j||^tau  [+ b_j]         no bias unless keep_bias (the reference drops
 * it) LOGIT_ADJ  z_j = W_j . x + b_j - tau log pi_j           post-hoc logit adjustment (Menon et al. 2021)
 *   NCM        z_j = -||t(x) - c_j||^2   (dist l2)          nearest class mean; t = un | l2n | cl2n
 *              z_j = t(x) . c_j / D       (dist cos)        (the reference divides the dot product by D)
 *
 * NCM feature transforms t (the query gets the same transform as the training features):
 *   un    t(x) = x
 *   l2n   t(x) = x / ||x||
 *   cl2n  t(x) = (x - mu) / ||x - mu||,   mu = mean of ALL training features (sum / N, in double)
 * and c_j = mean over class j of t(x_i). Centroids are NOT re-normalised (as the reference). A zero vector
 * (||x|| = 0, or x = mu) transforms to 0 instead of the reference's NaN.
 *
 * Memory: a head owns ONE float slab (W | b | scales | offset | mean | derived), so it can be broadcast as
 * raw bytes after its small integer meta block (dc_head_meta / dc_head_init_from_meta), or saved as named
 * tensors with safetensors (dc_head_tensors / dc_head_save / dc_head_load). NCM keeps its centroids in W.
 *
 * Distributed use (the lead's `decouple heads`, several ranks):
 *   NCM      every rank accumulates dc_ncm_stats over its shard of the training features; the double arrays
 *            stats.mean_buf (pass 1) and stats.buf (pass 2) are summed over ranks (MPI_Allreduce, MPI_DOUBLE)
 *            between accumulate and fit; all ranks then fit the identical head.
 *   cRT/LWS  every rank trains on its share of each global batch (the sampler's rank slice) and the opts'
 *            reduce callback sums the gradient vector; every rank applies the identical update.
 *   tau      the sweep's per-tau counters (dc_tau_sweep.counts, int64) are additive: sum them over ranks.
 */
#ifndef DC_HEAD_H
#define DC_HEAD_H

#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/json_writer.h"
#include "core/tensor.h"
#include "heads/metrics.h"

/* ---- The head ------------------------------------------------------------------------------------------ */

typedef enum {
    DC_HEAD_KIND_LINEAR = 0,
    DC_HEAD_KIND_LWS = 1,
    DC_HEAD_KIND_TAU_NORM = 2,
    DC_HEAD_KIND_LOGIT_ADJ = 3,
    DC_HEAD_KIND_NCM = 4
} dc_head_kind;
#define DC_HEAD_NUM_KINDS 5

typedef enum { DC_NCM_UN = 0, DC_NCM_L2N = 1, DC_NCM_CL2N = 2 } dc_ncm_feat;
typedef enum { DC_NCM_DIST_L2 = 0, DC_NCM_DIST_COS = 1 } dc_ncm_dist;

typedef struct {
    dc_head_kind kind;
    int D, C;
    int has_bias; /* LINEAR, LWS, LOGIT_ADJ: b is used; TAU_NORM: keep_bias; NCM: 0 */
    float tau;    /* TAU_NORM, LOGIT_ADJ */
    dc_ncm_feat feat_type;
    dc_ncm_dist dist;

    /* views into the slab */
    float *W;      /* [C, D]: linear weights (PyTorch fc.weight layout); NCM: the centroids c_j */
    float *b;      /* [C]: bias (zeros when unused) */
    float *scales; /* [C]: LWS: s_j (learned); TAU_NORM: ||W_j||^-tau (derived); else 1 */
    float *offset; /* [C]: LOGIT_ADJ: -tau log pi_j; else 0 */
    float *mean;   /* [D]: NCM cl2n: the training-feature mean mu; else 0 */
    float *c_sq;   /* [C]: derived, NCM: ||c_j||^2 */
    float *c_mu;   /* [C]: derived, NCM cl2n: c_j . mu */

    float *slab;     /* one allocation, 64-byte aligned */
    size_t slab_len; /* in floats */
} dc_head;

/* Creates an empty head of a kind (all arrays zero, scales 1). Errors: D < 1, C < 1, an unknown kind, a slab
 * size that overflows. dc_head_free releases it (safe on a zeroed or freed head). */
int dc_head_init(dc_head *h, dc_head_kind kind, int D, int C);
void dc_head_free(dc_head *h);
/* Deep copy (dst must not be initialised; it is overwritten). */
int dc_head_copy(dc_head *dst, const dc_head *src);

/* A LINEAR head holding the given joint classifier (W [C, D], b [C], b may be NULL = no bias). */
int dc_head_init_linear(dc_head *h, int D, int C, const float *W, const float *b);

/* PyTorch's default nn.Linear init, re-drawn for cRT: W, b ~ U(-1/sqrt(D), 1/sqrt(D)), from the streams
 * dc_rng_key(seed, DC_RNG_HEAD, 0, 0) (W, row-major) and dc_rng_key(seed, DC_RNG_HEAD, 0, 1) (b).
 * Works on LINEAR heads; sets has_bias = 1. */
int dc_head_reset_linear(dc_head *h, uint64_t seed);

/* An LWS head over the frozen joint classifier: W, b copied, scales s = 1. */
int dc_head_init_lws(dc_head *h, const dc_head *joint);

/* tau-normalised copy of the joint classifier: W kept as is, scales_j = ||W_j||^-tau (1 for a zero row), b
 * kept only when keep_bias. */
int dc_head_init_tau_norm(dc_head *h, const dc_head *joint, float tau, int keep_bias);

/* Post-hoc logit adjustment of the joint classifier: offset_j = -tau log pi_j, pi_j = n_j / sum_i n_i
 * (a class with n_j = 0 uses pi_j = 1e-12, the reference LA code's guard). tau = 0 is the joint head. */
int dc_head_init_logit_adj(dc_head *h, const dc_head *joint, const int64_t *train_counts, float tau);

/* Recomputes the derived arrays (tau-norm scales, NCM c_sq / c_mu) after W, mean or tau changed. */
void dc_head_refresh(dc_head *h);

/* logits [N, C] = head(X [N, D]). No allocation; OpenBLAS threads inside the GEMM, OpenMP over rows. */
void dc_head_logits(const dc_head *h, const float *X, int N, float *logits);

/* z[n, j] = z[n, j] * mul[j] + add[j] in place (mul or add may be NULL = 1 or 0): the per-column map that
 * follows the GEMM for the LWS, tau-norm and logit-adjusted heads; shared with the sweep so that both round
 * identically. */
void dc_head_affine_columns(float *z, int N, int C, const float *mul, const float *add);

/* The effective per-class weight norm: LINEAR / LOGIT_ADJ ||W_j||, LWS |s_j| ||W_j||, TAU_NORM
 * ||W_j||^(1-tau) (= ||W_j|| scales_j), NCM ||c_j||. out [C], computed in double. */
void dc_head_class_norms(const dc_head *h, double *out);

const char *dc_head_kind_name(dc_head_kind k);          /* "linear", "lws", "tau_norm", "logit_adj", "ncm" */
const char *dc_ncm_feat_name(dc_ncm_feat f);            /* "un", "l2n", "cl2n" */
const char *dc_ncm_dist_name(dc_ncm_dist d);            /* "l2", "cos" */
int dc_ncm_feat_parse(const char *s, dc_ncm_feat *out); /* errors name the bad value and the choices */
int dc_ncm_dist_parse(const char *s, dc_ncm_dist *out);

/* ---- serialisation ------------------------------------------------------------------------------------- */

/* The meta block: format version, kind, D, C, has_bias, feat_type, dist, tau (float bits). Broadcast it first
 * (8 int32), then dc_head_init_from_meta on the receivers, then the slab (slab_len floats). */
#define DC_HEAD_META_LEN 8
#define DC_HEAD_FORMAT   1
void dc_head_meta(const dc_head *h, int32_t meta[DC_HEAD_META_LEN]);
int dc_head_init_from_meta(dc_head *h, const int32_t meta[DC_HEAD_META_LEN]);

/* Named tensor views of the head (no copy): "head.meta" (I32 [8], points into `meta_storage`, which the
 * caller keeps alive) and, as the kind needs them, "head.weight" [C, D], "head.bias" [C], "head.scales" [C],
 * "head.offset" [C], "head.mean" [D]. Derived arrays are not listed (recomputed on load). Returns the number
 * of tensors written to out (at most DC_HEAD_MAX_TENSORS). */
#define DC_HEAD_MAX_TENSORS 6
int dc_head_tensors(const dc_head *h, int32_t meta_storage[DC_HEAD_META_LEN],
                    dc_tensor out[DC_HEAD_MAX_TENSORS]);
/* Rebuilds a head from such tensors (by name, order free; extra names are an error; copies the data).
 * `what` names the source in messages. */
int dc_head_from_tensors(dc_head *h, const dc_tensor *t, int n, const char *what);
/* safetensors file with the tensors above and __metadata__ {"decouple_head": kind name}. Atomic write. */
int dc_head_save(const dc_head *h, const char *path);
int dc_head_load(dc_head *h, const char *path);

/* ---- NCM: class statistics that ranks can reduce ------------------------------------------------------- */

typedef struct {
    int D, C;
    /* pass 1 (cl2n only): the global feature mean */
    double *mean_buf; /* [D + 1]: sum_i x_i | N       reduce point 1: sum it whole over ranks */
    /* pass 2: the class sums of the transformed features */
    double *buf;   /* [C*D + C]: sum | count        reduce point 2: sum it whole over ranks */
    double *sum;   /* [C, D] view into buf */
    double *count; /* [C] view into buf (exact integers up to 2^53) */
} dc_ncm_stats;

int dc_ncm_stats_init(dc_ncm_stats *s, int D, int C);
void dc_ncm_stats_free(dc_ncm_stats *s);
void dc_ncm_stats_reset(dc_ncm_stats *s);

/* Pass 1: adds the rows of X to mean_buf (in double). */
void dc_ncm_accumulate_mean(dc_ncm_stats *s, const float *X, int64_t N);
/* After reducing mean_buf: mu = sum / N into mean_out [D] (float, as it is then used; the double mean is
 * rounded once). Error when no sample was accumulated. */
int dc_ncm_mean(const dc_ncm_stats *s, float *mean_out);

/* Pass 2: adds t(x_i) to the sums of class y_i (transform computed in double). mean is mu for cl2n (ignored
 * otherwise; may be NULL then). Errors: a label outside [0, C) (message gives the row), cl2n without mean. */
int dc_ncm_accumulate(dc_ncm_stats *s, const float *X, const int32_t *y, int64_t N, dc_ncm_feat feat_type,
                      const float *mean);

/* After reducing buf: the NCM head, c_j = sum_j / count_j. `mean` is stored for cl2n (may be NULL
 * otherwise). Error: a class without training samples (the reference would misalign its centroids). */
int dc_ncm_fit(const dc_ncm_stats *s, dc_ncm_feat feat_type, dc_ncm_dist dist, const float *mean,
               dc_head *out);

/* NCM logits (dc_head_logits dispatches here) and the derived arrays c_sq = ||c_j||^2, c_mu = c_j . mu. */
void dc_ncm_logits(const dc_head *h, const float *X, int N, float *logits);
void dc_ncm_refresh(dc_head *h);

/* Single-process convenience: both passes over X [N, D] and the fit. */
int dc_ncm_fit_features(const float *X, const int32_t *y, int64_t N, int D, int C, dc_ncm_feat feat_type,
                        dc_ncm_dist dist, dc_head *out);

/* ---- cRT and LWS: training a head on features with class-balanced batches ------------------------------ */

/* Where each batch's features come from when not from a matrix: fills X_out [n, D] with the features of the
 * training samples idx[0..n) for epoch `epoch` (e.g. re-extracted with training augmentation, which is what
 * the reference does: its stage 2 runs the frozen backbone on augmented images every epoch). Returns DC_OK,
 * or DC_FAIL after DC_ERR (training stops and the error propagates). */
typedef int (*dc_feature_source)(void *ctx, const int64_t *idx, int n, int epoch, float *X_out);

/* Sums a float vector over ranks in place (MPI_Allreduce(MPI_IN_PLACE, g, n, MPI_FLOAT, MPI_SUM)). The vector
 * is the trainer's gradient followed by ONE extra float, the rank's loss sum of the batch, so the loss is
 * reduced in the same call: n = dc_head_num_trainable(h) + 1. */
typedef void (*dc_grad_reduce)(float *grad, size_t n, void *ctx);

/* Called after every epoch with the global mean training loss of the epoch and the epoch's lr. */
typedef void (*dc_head_epoch_hook)(void *ctx, int epoch, double mean_loss, double lr);

typedef struct {
    int num_epochs;     /* cRT 10 (iNat 30), LWS 5 */
    int batch_size;     /* GLOBAL batch B; steps per epoch = floor(N / B) */
    float lr;           /* cRT: the config's classifier lr (0.2 at B = 512), LWS 0.2 */
    float momentum;     /* 0.9 */
    float weight_decay; /* 5e-4; applies to W and b (cRT) or to s (LWS), as torch.optim.SGD */
    int nesterov;
    dc_sched_cfg sched;       /* cosine per epoch (the reference); see core/schedule.h */
    double endlr;             /* cosine floor, 0 */
    dc_sampler_cfg sampler;   /* class_aware with num_samples_cls = 4 (the reference's stage 2) */
    int shuffle_in_batch;     /* permute each global batch before sharding (reference training_opt.shuffle) */
    uint64_t seed;            /* run seed; the sampler uses dc_rng_key(seed, DC_RNG_HEAD, 1, 0) as its seed */
    const float *loss_offset; /* [C] or NULL: CE(z + offset, y): tau log pi_j = logit-adjusted loss,
                                 log n_j = Balanced Softmax (use with an instance-balanced sampler) */
    int rank, world_size;     /* this process's share of each global batch (B % world_size == 0) */
    dc_grad_reduce reduce;    /* NULL: single process (world_size must be 1) */
    void *reduce_ctx;
    dc_feature_source source; /* NULL: rows of the X matrix passed to dc_head_train */
    void *source_ctx;
    dc_head_epoch_hook on_epoch; /* NULL: silent */
    void *hook_ctx;
    double *epoch_loss; /* [num_epochs] or NULL: receives each epoch's global mean loss */
} dc_head_train_opts;

/* The reference's stage-2 defaults: 10 epochs, B 512, lr 0.2, momentum 0.9, wd 5e-4, cosine per epoch to 0,
 * class-aware sampler with k = 4, seed 0, single process. */
void dc_head_train_defaults(dc_head_train_opts *o);

/* Number of trained parameters: LINEAR C*D + C (W then b), LWS C (s). Other kinds: 0 (not trainable). */
size_t dc_head_num_trainable(const dc_head *h);

/* Trains the head in place on the training set (labels y [N], all ranks pass the full label array; X [N, D]
 * the full feature matrix or NULL when opts->source is set). LINEAR: W and b (reset them first for cRT);
 * LWS: the scales. Deterministic for a seed; allocates once, then the loop allocates nothing. */
int dc_head_train(dc_head *h, const dc_head_train_opts *opts, const float *X, const int32_t *y, int64_t N);

/* The same loop in pieces, for callers that drive steps themselves (and for the tests' rank simulation). */
typedef struct dc_head_trainer dc_head_trainer;
int dc_head_trainer_create(dc_head_trainer **out, dc_head *h, const dc_head_train_opts *opts,
                           const int32_t *y, int64_t N);
void dc_head_trainer_free(dc_head_trainer *t);
int64_t dc_head_trainer_total_steps(const dc_head_trainer *t); /* num_epochs * floor(N / B) */
/* Forward + backward of this rank's share of global step `step` into the gradient vector (scaled by 1/B, the
 * loss sum appended): dc_head_trainer_grad(t) [dc_head_num_trainable + 1]. */
int dc_head_trainer_backward(dc_head_trainer *t, int64_t step, const float *X);
float *dc_head_trainer_grad(dc_head_trainer *t);
/* This rank's sample indices of the last backward (n receives the local batch size). */
const int64_t *dc_head_trainer_batch(const dc_head_trainer *t, int *n);
/* SGD update with the (reduced) gradient vector at the lr of global step `step`; returns that lr. */
double dc_head_trainer_apply(dc_head_trainer *t, int64_t step);
/* backward, reduce (when set), apply. */
int dc_head_trainer_step(dc_head_trainer *t, int64_t step, const float *X, double *loss_sum_out);

/* ---- tau sweeps: tau-norm and post-hoc logit adjustment, chosen on validation features ----------------- */

typedef enum { DC_SWEEP_TAU_NORM = 0, DC_SWEEP_LOGIT_ADJ = 1 } dc_sweep_family;

#define DC_TAU_MAX 64

/* The reference grid: numpy.linspace(0, 2, 21), tau_i = i * (2 / 20). Writes 21 values, returns 21. */
int dc_tau_grid_default(double taus[DC_TAU_MAX]);

typedef struct {
    double tau;
    dc_metrics_summary s; /* micro top-1 (s.top1), macro (s.macro_top1), many / medium / few */
} dc_tau_row;

typedef struct {
    dc_sweep_family family;
    int keep_bias; /* tau-norm: keep b (BagofTricks) instead of dropping it (reference) */
    int n_taus;
    double taus[DC_TAU_MAX];
    int C, D;
    /* counters: n_taus blocks of 3*C int64 (count | correct1 | correct5), one dc_metrics view per tau.
     * Reduce point: sum `counts` whole over ranks before dc_tau_sweep_finish. */
    int64_t *counts;
    dc_metrics m[DC_TAU_MAX];
    /* results (dc_tau_sweep_finish) */
    dc_tau_row rows[DC_TAU_MAX];
    int best; /* index of the chosen tau */
    /* private */
    const dc_head *joint;
    float *col_scale; /* [n_taus * C]: per-tau column factor (tau-norm) */
    float *col_add;   /* [n_taus * C]: per-tau column addend (bias or -tau log pi) */
    float *raw, *z;   /* [block_rows * C] scratch */
    int block_rows;
} dc_tau_sweep;

/* Prepares a sweep of the joint LINEAR head. train_counts [C] gives pi (logit adjustment); taus may be NULL
 * for the default grid. */
int dc_tau_sweep_init(dc_tau_sweep *sw, dc_sweep_family family, const dc_head *joint,
                      const int64_t *train_counts, const double *taus, int n_taus, int keep_bias);
void dc_tau_sweep_free(dc_tau_sweep *sw);
/* Adds evaluation features (any number of calls; blocks of rows internally, no allocation). */
void dc_tau_sweep_add(dc_tau_sweep *sw, const float *X, const int32_t *y, int N);
/* Summaries per tau and the choice. The criterion: the highest VALIDATION macro accuracy (mean of per-class
 * accuracies, the reference tau_norm.py's "all"); ties (exactly equal macro) go to the higher micro top-1,
 * then to the SMALLER tau (the least change to the joint classifier). Never run the choice on test features.
 */
void dc_tau_sweep_finish(dc_tau_sweep *sw, const int64_t *train_counts);
double dc_tau_sweep_best_tau(const dc_tau_sweep *sw);
/* The head at the chosen (or any) tau: a TAU_NORM or LOGIT_ADJ head built from the joint one. */
int dc_tau_sweep_make_head(const dc_tau_sweep *sw, const int64_t *train_counts, double tau, dc_head *out);
/* Writes the sweep as a JSON object value {"family", "criterion", "chosen_tau", "table": [{"tau", "top1",
 * "macro", "many", "medium", "few"}, ...]} into a writer positioned where a value is expected. */
int dc_tau_sweep_write_json(const dc_tau_sweep *sw, dc_json_writer *w);

#endif /* DC_HEAD_H */
