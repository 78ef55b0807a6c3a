/*
 * stage2.c: the decoupled classifier stage and the evaluation, on every rank.
 *
 *   1. features   each rank extracts its contiguous shard of train (plain: eval transforms), val and test
 * with the frozen backbone in eval mode (BN running statistics averaged over ranks beforehand)
 *   2. heads      joint      the stage-1 fc
 *                 NCM        class sums of transformed features, MPI-reduced in double, fitted on rank 0
 *                 tau-norm   W / ||W||^tau, tau swept on val (counters reduced over ranks), chosen by val
 * macro logit adj. z - tau log pi, swept and chosen like tau-norm cRT        re-initialised fc trained with
 * class-balanced batches LWS        per-class scales on the frozen fc, class-balanced batches cRT / LWS
 * default: rank 0 trains over the gathered train features (row-datatype gather, no int overflow at iNat
 * scale). stage2.distributed or stage2.features=reextract: every rank trains on its share of each global
 * batch, features computed by the backbone on the fly (eval transforms + eval BN = the cached features;
 * reextract = training augmentation + BN in training mode, the reference's protocol), head gradients summed
 * with MPI_Allreduce. Every head is broadcast from rank 0, so all ranks hold bit-identical heads.
 *   3. evaluation each rank scores its test shard with every head; per-class counters are summed to rank 0,
 *                 which checks the total, prints the table and writes results.json, heads.safetensors and
 *                 the SVG pictures.
 */
#include "stage2.h"

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/json_writer.h"
#include "core/npy.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "heads/head.h"
#include "heads/metrics.h"
#include "heads/svg.h"
#include "model.h"

#include <errno.h>
#include <zlib.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- features of one split: this rank's contiguous shard -------------------------------------------------
 */

typedef struct {
    const char *name;
    dc_dataset *ds;
    int64_t N, begin, end; /* global size and this rank's [begin, end) */
    float *X;              /* [end - begin, D] */
    int32_t *y;            /* [end - begin] */
} split_features;

static void extract_split(dc_job *job, dc_net *net, split_features *s, int max_batch, float *xbuf) {
    const int R = job->comm.world, r = job->comm.rank, D = net->feat_dim;
    s->N = dc_dataset_size(s->ds);
    s->begin = s->N * r / R;
    s->end = s->N * (r + 1) / R;
    const int64_t n_local = s->end - s->begin;
    s->X = dc_malloc(((size_t)n_local + 1) * D * sizeof(float));
    s->y = dc_malloc(((size_t)n_local + 1) * sizeof(int32_t));
    int64_t *idx = dc_malloc((size_t)max_batch * sizeof(int64_t));
    DC_CHECK(s->X && s->y && idx, "out of memory for the features");
    for (int64_t i = s->begin; i < s->end; i += max_batch) {
        int n = (int)(s->end - i < max_batch ? s->end - i : max_batch);
        for (int k = 0; k < n; k++) idx[k] = i + k;
        DC_CHECK_OK(dc_dataset_get_batch(s->ds, idx, n, 0, job->cfg.training_opt.seed, 0, xbuf,
                                         s->y + (i - s->begin)),
                    "fix or remove the file, or set training_opt.skip_bad_images: true");
        dc_net_forward(net, xbuf, n, 0);
        memcpy(s->X + (size_t)(i - s->begin) * D, net->feat, (size_t)n * D * sizeof(float));
    }
    free(idx);
}

static void free_split(split_features *s) {
    free(s->X);
    free(s->y);
    s->X = NULL;
    s->y = NULL;
}

/* ---- evaluation of one head on a sharded split ------------------------------------------------------------
 */

static void evaluate_head(dc_job *job, const dc_head *h, const split_features *s, float *logits, int chunk,
                          dc_metrics *m) {
    dc_metrics_reset(m);
    const int D = h->D;
    for (int64_t i = s->begin; i < s->end; i += chunk) {
        int n = (int)(s->end - i < chunk ? s->end - i : chunk);
        dc_head_logits(h, s->X + (size_t)(i - s->begin) * D, n, logits);
        dc_metrics_add(m, logits, s->y + (i - s->begin), n);
    }
    dc_comm_allreduce_sum_i64(&job->comm, m->buf, (size_t)3 * m->num_classes);
    int64_t total = 0;
    for (int c = 0; c < m->num_classes; c++) total += m->count[c];
    if (total != s->N)
        dc_fatal("sharded evaluation of %s counted %lld samples, the split has %lld", s->name,
                 (long long)total, (long long)s->N);
}

/* ---- broadcasting a head from rank 0 ----------------------------------------------------------------------
 */

/* Every rank must hold the same head: compare a CRC of the slab (min and max over ranks agree). */
static void check_head_identical(dc_job *job, const dc_head *h, const char *what) {
    double crc = (double)crc32(0L, (const unsigned char *)h->slab, (unsigned)(h->slab_len * sizeof(float)));
    double lo = -crc, hi = crc;
    dc_comm_allreduce_max_f64(&job->comm, &lo, 1);
    dc_comm_allreduce_max_f64(&job->comm, &hi, 1);
    if (-lo != hi) dc_fatal("the %s head differs between ranks after the broadcast", what);
    if (job->comm.world > 1)
        dc_job_print(job, "  %s head bit-identical on all %d ranks (crc32 %08lx)\n", what, job->comm.world,
                     (unsigned long)hi);
}

static void broadcast_head(dc_job *job, dc_head *h) {
    int32_t meta[DC_HEAD_META_LEN];
    if (job->comm.rank == 0) dc_head_meta(h, meta);
    dc_comm_bcast(&job->comm, meta, sizeof meta, 0);
    if (job->comm.rank != 0) {
        dc_head_free(h);
        DC_CHECK_OK(dc_head_init_from_meta(h, meta), "head broadcast");
    }
    dc_comm_bcast(&job->comm, h->slab, h->slab_len * sizeof(float), 0);
    if (job->comm.rank != 0) dc_head_refresh(h);
    check_head_identical(job, h, dc_head_kind_name(h->kind));
}

/* ---- cRT / LWS training -----------------------------------------------------------------------------------
 */

typedef struct {
    dc_job *job;
    dc_net *net;
    dc_dataset *train;
    int augment, bn_train;
    float *xbuf;
    int32_t *ybuf;
} backbone_source;

/* dc_feature_source: this rank's share of a global batch through the frozen backbone. */
static int backbone_features(void *ctx, const int64_t *idx, int n, int epoch, float *X_out) {
    backbone_source *b = ctx;
    if (dc_dataset_get_batch(b->train, idx, n, b->augment, b->job->cfg.training_opt.seed, epoch, b->xbuf,
                             b->ybuf) != DC_OK)
        return DC_FAIL;
    dc_net_forward(b->net, b->xbuf, n, b->bn_train);
    memcpy(X_out, b->net->feat, (size_t)n * b->net->feat_dim * sizeof(float));
    return DC_OK;
}

static void allreduce_head_grad(float *grad, size_t n, void *ctx) {
    dc_comm_allreduce_sum_f32((const dc_comm *)ctx, grad, n);
}

typedef struct {
    dc_job *job;
    const char *what;
} epoch_log;

static void on_head_epoch(void *ctx, int epoch, double mean_loss, double lr) {
    epoch_log *l = ctx;
    dc_job_print(l->job, "  %s epoch %d: loss %.4f, lr %.5f\n", l->what, epoch + 1, mean_loss, lr);
}

static void train_head(dc_job *job, dc_head *h, const char *what, const dc_head_train_cfg *tc,
                       const split_features *train, const int64_t *train_counts, const float *X_all,
                       int use_source, backbone_source *src) {
    const dc_config *cfg = &job->cfg;
    dc_head_train_opts o;
    dc_head_train_defaults(&o);
    o.num_epochs = tc->num_epochs;
    o.batch_size = tc->batch_size > 0 ? tc->batch_size : cfg->training_opt.batch_size;
    o.lr = tc->lr > 0 ? tc->lr : cfg->classifier.optim.lr;
    o.momentum = tc->momentum;
    o.weight_decay = tc->weight_decay;
    o.sched = cfg->scheduler;
    o.sched.type = DC_SCHED_COSINE; /* the reference's stage 2: cosine per epoch to endlr */
    o.sched.warmup_epochs = 0;
    o.endlr = cfg->endlr;
    o.sampler.type = DC_SAMPLER_CLASS_AWARE;
    o.sampler.num_samples_cls = cfg->stage2.num_samples_cls;
    o.shuffle_in_batch = cfg->training_opt.shuffle;
    o.seed = cfg->training_opt.seed;
    float *offset = NULL;
    if (h->kind == DC_HEAD_KIND_LINEAR && cfg->stage2.crt_loss_tau != 0.0f) {
        offset = dc_malloc((size_t)h->C * sizeof(float));
        DC_CHECK(offset != NULL, "out of memory");
        for (int c = 0; c < h->C; c++)
            offset[c] = cfg->stage2.crt_loss_tau * (float)log((double)train_counts[c] / (double)train->N);
        o.loss_offset = offset;
    }
    epoch_log log = {job, what};
    o.on_epoch = on_head_epoch;
    o.hook_ctx = &log;
    if (o.batch_size % job->comm.world != 0)
        dc_fatal("stage 2: the %s batch %d is not divisible by the %d ranks", what, o.batch_size,
                 job->comm.world);
    double t0 = omp_get_wtime();
    int failed = 0;
    if (use_source) {
        /* every rank: its share of each global batch through the backbone; head gradients summed */
        o.rank = job->comm.rank;
        o.world_size = job->comm.world;
        o.reduce = job->comm.world > 1 ? allreduce_head_grad : NULL;
        o.reduce_ctx = &job->comm;
        o.source = backbone_features;
        o.source_ctx = src;
        if (dc_head_train(h, &o, NULL, dc_dataset_labels(train->ds), train->N) != DC_OK) {
            dc_log("error: %s: %s", what, dc_last_error());
            failed = 1;
        }
        if (dc_comm_any(&job->comm, failed)) dc_fatal("stage 2: training %s failed", what);
    } else {
        /* rank 0 over the gathered features */
        if (job->comm.rank == 0 &&
            dc_head_train(h, &o, X_all, dc_dataset_labels(train->ds), train->N) != DC_OK) {
            dc_log("error: %s: %s", what, dc_last_error());
            failed = 1;
        }
        if (dc_comm_any(&job->comm, failed)) dc_fatal("stage 2: training %s failed", what);
    }
    broadcast_head(job, h);
    dc_job_print(job, "  %s trained in %.2f s (%d epochs, batch %d, lr %g)\n", what, omp_get_wtime() - t0,
                 o.num_epochs, o.batch_size, o.lr);
    free(offset);
}

/* ---- results ----------------------------------------------------------------------------------------------
 */

#define MAX_HEADS 8

typedef struct head_result_s {
    const char *name; /* "joint", "ncm", "crt", "tau_norm", "lws", "logit_adj" */
    dc_head head;
    dc_metrics_summary test, val;
    int has_val;
    double *per_class; /* [C] test accuracy per class */
    double tau;        /* tau-norm / logit adjustment: the chosen tau */
} head_result;

static void evaluate_into(dc_job *job, head_result *r, const split_features *te, const int64_t *counts,
                          int C) {
    dc_metrics m;
    DC_CHECK_OK(dc_metrics_init(&m, C), "out of memory");
    const int chunk = 1024;
    float *lg = dc_malloc((size_t)chunk * C * sizeof(float));
    DC_CHECK(lg != NULL, "out of memory");
    evaluate_head(job, &r->head, te, lg, chunk, &m);
    dc_metrics_summarize(&m, counts, &r->test);
    if (!r->per_class) r->per_class = dc_malloc((size_t)C * sizeof(double));
    DC_CHECK(r->per_class != NULL, "out of memory");
    for (int c = 0; c < C; c++) r->per_class[c] = dc_metrics_class_acc(&m, c);
    free(lg);
    dc_metrics_free(&m);
}

static void json_summary(dc_json_writer *w, const char *key, const dc_metrics_summary *s) {
    dc_json_key(w, key);
    dc_json_object_begin(w);
    dc_json_kv_int(w, "images", s->total);
    dc_json_kv_double(w, "top1", s->top1);
    dc_json_kv_double(w, "top5", s->top5);
    dc_json_kv_double(w, "macro", s->macro_top1);
    dc_json_kv_double(w, "many", s->many);
    dc_json_kv_double(w, "medium", s->medium);
    dc_json_kv_double(w, "few", s->few);
    dc_json_kv_double(w, "tail_half_macro", s->tail_half);
    dc_json_kv_int(w, "n_many", s->n_many);
    dc_json_kv_int(w, "n_medium", s->n_medium);
    dc_json_kv_int(w, "n_few", s->n_few);
    dc_json_object_end(w);
}

static int write_results_json(dc_job *job, const char *path, head_result *hr, int n_heads,
                              const int64_t *counts, int C, dc_tau_sweep *sweeps[2],
                              const dc_stage2_info *info) {
    dc_atomic_file af;
    FILE *fp = dc_atomic_open(path, &af);
    if (!fp) return DC_FAIL;
    dc_json_writer w;
    dc_json_init(&w, fp, 1);
    dc_json_object_begin(&w);
    dc_json_kv_string(&w, "format", "decouple-results-1");
    dc_json_kv_string(&w, "config", job->cfg.source_path);
    dc_json_kv_string(&w, "arch", job->cfg.feat_model.arch);
    dc_json_kv_string(&w, "weights", info->weights_path);
    dc_json_key(&w, "seed");
    dc_json_uint(&w, job->cfg.training_opt.seed);
    dc_json_kv_int(&w, "world_size", job->comm.world);
    dc_json_kv_string(&w, "stage2_features",
                      job->cfg.stage2.features == DC_FEATURES_CACHED ? "cached" : "reextract");
    dc_json_kv_string(&w, "tau_chosen_on", info->tau_split);
    dc_json_kv_double(&w, "stage1_seconds", info->stage1_seconds);
    dc_json_kv_double(&w, "stage2_seconds", info->stage2_seconds);
    dc_json_key(&w, "dataset");
    dc_json_object_begin(&w);
    dc_json_kv_string(&w, "train", info->train_desc);
    dc_json_kv_string(&w, "test", info->test_desc);
    dc_json_kv_int(&w, "num_classes", C);
    dc_json_key(&w, "train_counts");
    dc_json_array_begin(&w);
    for (int c = 0; c < C; c++) dc_json_int(&w, counts[c]);
    dc_json_array_end(&w);
    dc_json_kv_string(&w, "shot_thresholds", "many > 100, medium 20..100, few < 20 training images");
    dc_json_object_end(&w);
    dc_json_key(&w, "heads");
    dc_json_object_begin(&w);
    for (int i = 0; i < n_heads; i++) {
        dc_json_key(&w, hr[i].name);
        dc_json_object_begin(&w);
        if (!strcmp(hr[i].name, "ncm")) {
            dc_json_kv_string(&w, "feat_type", dc_ncm_feat_name(hr[i].head.feat_type));
            dc_json_kv_string(&w, "dist", dc_ncm_dist_name(hr[i].head.dist));
        }
        if (!strcmp(hr[i].name, "tau_norm") || !strcmp(hr[i].name, "logit_adj")) {
            dc_json_kv_double(&w, "tau", hr[i].tau);
            if (!strcmp(hr[i].name, "tau_norm")) dc_json_kv_bool(&w, "keep_bias", hr[i].head.has_bias);
        }
        json_summary(&w, "test", &hr[i].test);
        if (hr[i].has_val) json_summary(&w, "val", &hr[i].val);
        dc_json_key(&w, "test_per_class");
        dc_json_array_begin(&w);
        for (int c = 0; c < C; c++) dc_json_double(&w, hr[i].per_class[c]);
        dc_json_array_end(&w);
        dc_json_object_end(&w);
    }
    dc_json_object_end(&w);
    const char *sweep_names[2] = {"tau_norm_sweep", "logit_adj_sweep"};
    for (int k = 0; k < 2; k++) {
        if (!sweeps[k]) continue;
        dc_json_key(&w, sweep_names[k]);
        dc_tau_sweep_write_json(sweeps[k], &w);
    }
    dc_json_object_end(&w);
    if (dc_json_finish(&w) != DC_OK) {
        dc_atomic_abort(&af);
        return dc_error_wrap("%s", path);
    }
    return dc_atomic_commit(&af);
}

static void print_table(dc_job *job, head_result *hr, int n_heads) {
    dc_job_print(job, "\n%-14s %8s %8s %8s %8s %8s %9s %8s\n", "head", "many", "medium", "few", "all",
                 "macro", "tail-half", "top-5");
    for (int i = 0; i < n_heads; i++) {
        const dc_metrics_summary *s = &hr[i].test;
        char name[32];
        if (!strcmp(hr[i].name, "tau_norm") || !strcmp(hr[i].name, "logit_adj"))
            snprintf(name, sizeof name, "%s(%.1f)", hr[i].name, hr[i].tau);
        else
            snprintf(name, sizeof name, "%s", hr[i].name);
        dc_job_print(job, "%-14s %8.2f %8.2f %8.2f %8.2f %8.2f %9.2f %8.2f\n", name, 100 * s->many,
                     100 * s->medium, 100 * s->few, 100 * s->top1, 100 * s->macro_top1, 100 * s->tail_half,
                     100 * s->top5);
    }
    const dc_metrics_summary *s = &hr[0].test;
    dc_job_print(
        job,
        "(test top-1 %%; classes: many %d (> 100 train images), medium %d (20-100), few %d (< 20)%s; "
        "tail-half: macro over the half of the classes with the fewest training images)\n\n",
        s->n_many, s->n_medium, s->n_few,
        (s->n_many && s->n_medium && s->n_few) ? "" : "; an empty group prints nan");
}

static int save_npy_split(const char *dir, const char *name, const float *X, const int32_t *y, int64_t N,
                          int D) {
    char path[DC_PATH_MAX * 2];
    int64_t xs[2] = {N, D}, ys[1] = {N};
    snprintf(path, sizeof path, "%s/%s_features.npy", dir, name);
    DC_TRY(dc_npy_write(path, DC_F32, 2, xs, X));
    snprintf(path, sizeof path, "%s/%s_labels.npy", dir, name);
    return dc_npy_write(path, DC_I32, 1, ys, y);
}

/* ---- the stage --------------------------------------------------------------------------------------------
 */

int dc_stage2_run(dc_job *job, const char *weights_path, dc_stage2_info *info) {
    const dc_config *cfg = &job->cfg;
    const dc_training_opt *opt = &cfg->training_opt;
    const dc_stage2_cfg *s2 = &cfg->stage2;
    const int rank = job->comm.rank, R = job->comm.world;
    double t_start = omp_get_wtime();

    /* data: train (plain), val (when there is one), test */
    dc_dataset *train_ds = NULL, *val_ds = NULL, *test_ds = NULL;
    DC_CHECK_OK(dc_dataset_open(opt, DC_SPLIT_TRAIN, &train_ds), "check training_opt.dataset and data_root");
    if (dc_dataset_has_split(opt, DC_SPLIT_VAL))
        DC_CHECK_OK(dc_dataset_open(opt, DC_SPLIT_VAL, &val_ds),
                    "check training_opt.val_list / val_per_class");
    DC_CHECK_OK(dc_dataset_open(opt, DC_SPLIT_TEST, &test_ds), "check training_opt.test_list");
    snprintf(info->train_desc, sizeof info->train_desc, "%s", dc_dataset_describe(train_ds));
    snprintf(info->test_desc, sizeof info->test_desc, "%s", dc_dataset_describe(test_ds));
    snprintf(info->weights_path, sizeof info->weights_path, "%s", weights_path);
    const int C = dc_dataset_num_classes(train_ds), S = dc_dataset_image_size(train_ds),
              Cin = dc_dataset_channels(train_ds);
    const int64_t *counts = dc_dataset_class_counts(train_ds);

    /* the backbone, from the stage-1 weights, identical on every rank */
    const int use_source = s2->distributed || s2->features == DC_FEATURES_REEXTRACT;
    int max_batch = opt->batch_size / R;
    int crt_b = (s2->crt_train.batch_size > 0 ? s2->crt_train.batch_size : opt->batch_size) / R;
    int lws_b = (s2->lws_train.batch_size > 0 ? s2->lws_train.batch_size : opt->batch_size) / R;
    if (use_source && crt_b > max_batch) max_batch = crt_b;
    if (use_source && lws_b > max_batch) max_batch = lws_b;
    if (max_batch < 1) max_batch = 1;
    dc_config *mcfg = &job->cfg;
    char saved_init[DC_PATH_MAX];
    memcpy(saved_init, mcfg->init_weights, sizeof saved_init);
    if (strlen(weights_path) >= DC_PATH_MAX) dc_fatal("weights path too long: %s", weights_path);
    memcpy(mcfg->init_weights, weights_path, strlen(weights_path) + 1);
    dc_net *net = dc_job_build_net(job, max_batch, S, Cin, C, 1);
    memcpy(mcfg->init_weights, saved_init, sizeof saved_init);
    const int D = net->feat_dim;
    float *xbuf = dc_malloc_aligned((size_t)max_batch * Cin * S * S * sizeof(float));
    int32_t *ybuf = dc_malloc((size_t)max_batch * sizeof(int32_t));
    DC_CHECK(xbuf && ybuf, "out of memory");

    /* 1. features */
    double t0 = omp_get_wtime();
    split_features tr = {.name = "train", .ds = train_ds}, va = {.name = "val", .ds = val_ds},
                   te = {.name = "test", .ds = test_ds};
    extract_split(job, net, &tr, max_batch, xbuf);
    if (val_ds) extract_split(job, net, &va, max_batch, xbuf);
    extract_split(job, net, &te, max_batch, xbuf);
    dc_job_print(
        job, "stage 2: features extracted in %.1f s (train %lld, val %lld, test %lld; D = %d; %d rank(s))\n",
        omp_get_wtime() - t0, (long long)tr.N, (long long)(val_ds ? va.N : 0), (long long)te.N, D, R);
    const split_features *sel = val_ds ? &va : &tr;
    snprintf(info->tau_split, sizeof info->tau_split, "%s",
             val_ds ? "val" : "train (no val split configured)");
    if (!val_ds)
        dc_job_print(job,
                     "warning: no val split (training_opt.val_list / val_per_class): tau is chosen on the "
                     "training features, which favours small tau\n");

    /* the features rank 0 needs to train cRT / LWS alone */
    float *X_all = NULL;
    int32_t *y_all = NULL;
    const int need_gather = !use_source && (s2->crt || s2->lws);
    if ((need_gather || s2->save_features) && rank == 0) {
        X_all = dc_malloc((size_t)tr.N * D * sizeof(float));
        y_all = dc_malloc((size_t)tr.N * sizeof(int32_t));
        DC_CHECK(X_all && y_all,
                 "rank 0 cannot hold the gathered train features; set stage2.distributed: true");
    }
    if (need_gather || s2->save_features) {
        dc_comm_gather_rows(&job->comm, tr.X, tr.end - tr.begin, (size_t)D * sizeof(float), X_all);
        dc_comm_gather_rows(&job->comm, tr.y, tr.end - tr.begin, sizeof(int32_t), y_all);
    }

    /* 2. heads */
    head_result hr[MAX_HEADS];
    memset(hr, 0, sizeof hr);
    int n_heads = 0;
    dc_head *joint = &hr[n_heads].head;
    hr[n_heads++].name = "joint";
    DC_CHECK_OK(dc_head_init_linear(joint, D, C, net->fc_w, net->fc_b), "joint head");
    dc_tau_sweep sweeps_store[2], *sweeps[2] = {NULL, NULL};

    if (info->heads_dir) {
        /* `decouple eval`: the heads a previous `run`/`heads` saved */
        static const char *const names[] = {"ncm", "tau_norm", "logit_adj", "crt", "lws"};
        const int wanted[] = {s2->ncm, s2->tau_norm, s2->logit_adjust, s2->crt, s2->lws};
        for (int k = 0; k < 5; k++) {
            if (!wanted[k]) continue;
            head_result *r = &hr[n_heads++];
            r->name = names[k];
            char path[DC_PATH_MAX + 64];
            snprintf(path, sizeof path, "%s/head_%s.safetensors", info->heads_dir, names[k]);
            int failed = 0;
            if (rank == 0 && dc_head_load(&r->head, path) != DC_OK) {
                dc_log("error: %s", dc_last_error());
                failed = 1;
            }
            if (dc_comm_any(&job->comm, failed))
                dc_fatal_at(__FILE__, __LINE__, "run `decouple heads` first, or disable the head in stage2.*",
                            "cannot load the %s head from %s", names[k], path);
            if (rank != 0) DC_CHECK_OK(dc_head_init(&r->head, DC_HEAD_KIND_LINEAR, D, C), "out of memory");
            broadcast_head(job, &r->head);
            r->tau = r->head.tau;
            if (r->head.D != D || r->head.C != C)
                dc_fatal("%s: head of %d x %d, the backbone gives %d features for %d classes", path,
                         r->head.C, r->head.D, D, C);
        }
        goto evaluate;
    }

    if (s2->ncm) {
        t0 = omp_get_wtime();
        dc_ncm_stats st;
        DC_CHECK_OK(dc_ncm_stats_init(&st, D, C), "out of memory");
        float *mean = dc_calloc((size_t)D, sizeof(float));
        DC_CHECK(mean != NULL, "out of memory");
        const int64_t n_local = tr.end - tr.begin;
        if (s2->ncm_feat == DC_NCM_CL2N) {
            dc_ncm_accumulate_mean(&st, tr.X, n_local);
            dc_comm_allreduce_sum_f64(&job->comm, st.mean_buf, (size_t)D + 1);
            DC_CHECK_OK(dc_ncm_mean(&st, mean), "NCM mean");
        }
        DC_CHECK_OK(dc_ncm_accumulate(&st, tr.X, tr.y, n_local, (dc_ncm_feat)s2->ncm_feat, mean), "NCM");
        /* class sums and counts to rank 0 in double (MPI_Reduce semantics through an allreduce) */
        dc_comm_allreduce_sum_f64(&job->comm, st.buf, (size_t)C * D + C);
        dc_head *h = &hr[n_heads].head;
        hr[n_heads++].name = "ncm";
        int failed = 0;
        if (rank == 0 &&
            dc_ncm_fit(&st, (dc_ncm_feat)s2->ncm_feat, (dc_ncm_dist)s2->ncm_dist, mean, h) != DC_OK) {
            dc_log("error: NCM: %s", dc_last_error());
            failed = 1;
        }
        if (dc_comm_any(&job->comm, failed)) dc_fatal("stage 2: NCM failed");
        if (rank != 0) DC_CHECK_OK(dc_head_init(h, DC_HEAD_KIND_NCM, D, C), "out of memory");
        broadcast_head(job, h);
        dc_ncm_stats_free(&st);
        free(mean);
        dc_job_print(job, "  ncm (%s, %s) fitted in %.2f s\n", dc_ncm_feat_name((dc_ncm_feat)s2->ncm_feat),
                     dc_ncm_dist_name((dc_ncm_dist)s2->ncm_dist), omp_get_wtime() - t0);
    }

    const int families[2] = {s2->tau_norm, s2->logit_adjust};
    for (int k = 0; k < 2; k++) {
        if (!families[k]) continue;
        dc_tau_sweep *sw = &sweeps_store[k];
        DC_CHECK_OK(dc_tau_sweep_init(sw, k == 0 ? DC_SWEEP_TAU_NORM : DC_SWEEP_LOGIT_ADJ, joint, counts,
                                      NULL, 0, k == 0 ? s2->tau_keep_bias : 0),
                    "tau sweep");
        dc_tau_sweep_add(sw, sel->X, sel->y, (int)(sel->end - sel->begin));
        dc_comm_allreduce_sum_i64(&job->comm, sw->counts, (size_t)sw->n_taus * 3 * C);
        dc_tau_sweep_finish(sw, counts);
        sweeps[k] = sw;
        head_result *r = &hr[n_heads++];
        r->name = k == 0 ? "tau_norm" : "logit_adj";
        r->tau = dc_tau_sweep_best_tau(sw);
        DC_CHECK_OK(dc_tau_sweep_make_head(sw, counts, r->tau, &r->head), "tau head");
        broadcast_head(job, &r->head);
        dc_job_print(job, "  %s: tau = %.1f chosen on %s (macro %.2f%%)\n", r->name, r->tau, info->tau_split,
                     100 * sw->rows[sw->best].s.macro_top1);
    }

    backbone_source src = {
        job,  net, train_ds, s2->features == DC_FEATURES_REEXTRACT, s2->features == DC_FEATURES_REEXTRACT,
        xbuf, ybuf};
    float *bn_backup = NULL;
    if (use_source && s2->features == DC_FEATURES_REEXTRACT) {
        bn_backup = dc_malloc(net->n_buffers * sizeof(float) + 1);
        DC_CHECK(bn_backup != NULL, "out of memory");
        memcpy(bn_backup, net->buffers, net->n_buffers * sizeof(float));
    }
    for (int k = 0; k < 2; k++) {
        if (!(k == 0 ? s2->crt : s2->lws)) continue;
        head_result *r = &hr[n_heads++];
        r->name = k == 0 ? "crt" : "lws";
        if (k == 0) {
            DC_CHECK_OK(dc_head_init_linear(&r->head, D, C, NULL, NULL), "cRT head");
            DC_CHECK_OK(dc_head_reset_linear(&r->head, dc_rng_key(opt->seed, DC_RNG_HEAD, 2, 0)), "cRT init");
        } else {
            DC_CHECK_OK(dc_head_init_lws(&r->head, joint), "LWS head");
        }
        train_head(job, &r->head, k == 0 ? "cRT" : "LWS", k == 0 ? &s2->crt_train : &s2->lws_train, &tr,
                   counts, X_all, use_source, &src);
        if (bn_backup) {
            /* the reference's protocol: this head is evaluated with the BN statistics its training moved, on
             * test features extracted again with them; then the stage-1 statistics come back for the rest */
            dc_job_average_bn(job, net);
            split_features te2 = {.name = "test", .ds = test_ds};
            extract_split(job, net, &te2, max_batch, xbuf);
            evaluate_into(job, r, &te2, counts, C);
            free_split(&te2);
            memcpy(net->buffers, bn_backup, net->n_buffers * sizeof(float));
        }
    }
    free(bn_backup);

    /* 3. evaluation */
evaluate:;
    dc_metrics m;
    DC_CHECK_OK(dc_metrics_init(&m, C), "out of memory");
    const int chunk = 1024;
    float *logits = dc_malloc((size_t)chunk * C * sizeof(float));
    DC_CHECK(logits != NULL, "out of memory");
    for (int i = 0; i < n_heads; i++) {
        if (!hr[i].per_class) evaluate_into(job, &hr[i], &te, counts, C); /* reextract heads are done */
        if (val_ds) {
            evaluate_head(job, &hr[i].head, &va, logits, chunk, &m);
            dc_metrics_summarize(&m, counts, &hr[i].val);
            hr[i].has_val = 1;
        }
    }
    info->stage2_seconds = omp_get_wtime() - t_start;
    print_table(job, hr, n_heads);
    for (int i = 0; i < n_heads && i < DC_STAGE2_MAX_HEADS; i++) {
        snprintf(info->head_names[i], sizeof info->head_names[i], "%s", hr[i].name);
        info->test[i] = hr[i].test;
    }
    info->n_heads = n_heads;

    /* rank 0 writes: results.json, heads.safetensors, the SVGs, optionally the features */
    int failed = 0;
    if (rank == 0) {
        char path[DC_PATH_MAX + 64];
        const char *dir = opt->log_dir;
        snprintf(path, sizeof path, "%s/results.json", dir);
        if (write_results_json(job, path, hr, n_heads, counts, C, sweeps, info) != DC_OK) {
            dc_log("error: %s", dc_last_error());
            failed = 1;
        } else
            dc_job_print(job, "wrote %s\n", path);
        for (int i = 1; i < n_heads && !failed; i++) {
            snprintf(path, sizeof path, "%s/head_%s.safetensors", dir, hr[i].name);
            if (dc_head_save(&hr[i].head, path) != DC_OK) {
                dc_log("error: %s", dc_last_error());
                failed = 1;
            }
        }
        /* pictures */
        dc_svg_series acc[MAX_HEADS], norms[3];
        int n_norms = 0;
        double *norm_store[3] = {NULL, NULL, NULL};
        for (int i = 0; i < n_heads; i++) acc[i] = (dc_svg_series){hr[i].name, hr[i].per_class};
        for (int i = 0; i < n_heads && n_norms < 3; i++) {
            if (strcmp(hr[i].name, "joint") && strcmp(hr[i].name, "tau_norm") && strcmp(hr[i].name, "lws"))
                continue;
            norm_store[n_norms] = dc_malloc((size_t)C * sizeof(double));
            dc_head_class_norms(&hr[i].head, norm_store[n_norms]);
            norms[n_norms] = (dc_svg_series){hr[i].name, norm_store[n_norms]};
            n_norms++;
        }
        snprintf(path, sizeof path, "%s/per_class_accuracy.svg", dir);
        if (!failed &&
            dc_svg_per_class_accuracy_file(path, "Test accuracy per class (classes by training count)",
                                           counts, C, acc, n_heads) != DC_OK)
            failed = 1;
        snprintf(path, sizeof path, "%s/weight_norms.svg", dir);
        if (!failed && dc_svg_class_norms_file(path, "Classifier weight norm per class", counts, C, norms,
                                               n_norms) != DC_OK)
            failed = 1;
        for (int k = 0; k < 2 && !failed; k++) {
            if (!sweeps[k]) continue;
            snprintf(path, sizeof path, "%s/%s.svg", dir, k == 0 ? "tau_sweep" : "logit_adjust_sweep");
            if (dc_svg_tau_sweep_file(path,
                                      k == 0 ? "tau-norm: accuracy on the selection split vs tau"
                                             : "logit adjustment: accuracy on the selection split vs tau",
                                      sweeps[k]) != DC_OK)
                failed = 1;
        }
        for (int i = 0; i < 3; i++) free(norm_store[i]);
        if (failed && dc_last_error()[0]) dc_log("error: %s", dc_last_error());
        if (!failed)
            dc_job_print(job, "wrote %s/{per_class_accuracy,weight_norms,tau_sweep,logit_adjust_sweep}.svg\n",
                         dir);
        if (!failed && s2->save_features) {
            char fdir[DC_PATH_MAX + 32];
            snprintf(fdir, sizeof fdir, "%s/features", dir);
            if (mkdir(fdir, 0775) != 0 && errno != EEXIST) {
                dc_log("error: cannot create %s: %s", fdir, strerror(errno));
                failed = 1;
            } else {
                int64_t ws[2] = {C, D}, bs[1] = {C};
                snprintf(path, sizeof path, "%s/fc_weight.npy", fdir);
                if (dc_npy_write(path, DC_F32, 2, ws, net->fc_w) != DC_OK) failed = 1;
                snprintf(path, sizeof path, "%s/fc_bias.npy", fdir);
                if (!failed && dc_npy_write(path, DC_F32, 1, bs, net->fc_b) != DC_OK) failed = 1;
                if (!failed && save_npy_split(fdir, "train", X_all, y_all, tr.N, D) != DC_OK) failed = 1;
                if (failed) dc_log("error: %s", dc_last_error());
            }
        }
    }
    if (s2->save_features) {
        /* val and test features to rank 0 (collective), then written there */
        for (int k = 0; k < 2; k++) {
            split_features *sp = k == 0 ? &va : &te;
            if (k == 0 && !val_ds) continue;
            float *Xg = NULL;
            int32_t *yg = NULL;
            if (rank == 0) {
                Xg = dc_malloc((size_t)sp->N * D * sizeof(float) + 1);
                yg = dc_malloc((size_t)sp->N * sizeof(int32_t) + 1);
                DC_CHECK(Xg && yg, "out of memory");
            }
            dc_comm_gather_rows(&job->comm, sp->X, sp->end - sp->begin, (size_t)D * sizeof(float), Xg);
            dc_comm_gather_rows(&job->comm, sp->y, sp->end - sp->begin, sizeof(int32_t), yg);
            if (rank == 0 && !failed) {
                char fdir[DC_PATH_MAX + 32];
                snprintf(fdir, sizeof fdir, "%s/features", opt->log_dir);
                if (save_npy_split(fdir, sp->name, Xg, yg, sp->N, D) != DC_OK) {
                    dc_log("error: %s", dc_last_error());
                    failed = 1;
                }
            }
            free(Xg);
            free(yg);
        }
    }
    if (dc_comm_any(&job->comm, failed))
        dc_fatal("stage 2 could not write its results into %s", opt->log_dir);

    for (int k = 0; k < 2; k++)
        if (sweeps[k]) dc_tau_sweep_free(sweeps[k]);
    for (int i = 0; i < n_heads; i++) {
        dc_head_free(&hr[i].head);
        free(hr[i].per_class);
    }
    dc_metrics_free(&m);
    free(logits);
    free(X_all);
    free(y_all);
    free_split(&tr);
    free_split(&va);
    free_split(&te);
    free(xbuf);
    free(ybuf);
    dc_net_free(net);
    dc_dataset_free(train_ds);
    dc_dataset_free(val_ds);
    dc_dataset_free(test_ds);
    return DC_OK;
}
