/*
 * config.h: the typed run configuration, read from YAML with libyaml.
 *
 * The schema follows the reference implementation (facebookresearch/classifier-balancing) where it fits:
 * `training_opt`, `networks.feat_model` / `networks.classifier` with `optim_params`, `coslr`, `endlr`; the
 * rest is decouple's own and every key is documented in docs/CONFIG.md. An unknown key, a wrong type or an
 * out-of-range value is an error naming the file, the line and the full key path.
 *
 * Command-line overrides use the same key paths: `--set training_opt.batch_size=256`.
 */
#ifndef DC_CONFIG_H
#define DC_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#define DC_PATH_MAX       1024
#define DC_NAME_MAX       64
#define DC_MAX_MILESTONES 16
#define DC_MAX_CHANNELS   4

typedef enum { DC_SCHED_CONSTANT = 0, DC_SCHED_MULTISTEP, DC_SCHED_COSINE } dc_sched_type;

typedef enum {
    DC_SAMPLER_INSTANCE = 0, /* q = 1: plain shuffle (reference: sampler null) */
    DC_SAMPLER_CLASS_AWARE,  /* q = 0: round-robin classes, k consecutive per class (ClassAwareSampler) */
    DC_SAMPLER_POWER,        /* q_j ∝ n_j^q, i.i.d. with replacement (MixedPrioritizedSampler, nroot=1/q) */
    DC_SAMPLER_PROGRESSIVE   /* p_j(t) = (1 - l_t) p^IB + l_t p^CB, l_t = min(t, T-1)/(T-1)
                                (ClassPrioritySampler) */
} dc_sampler_type;

typedef enum { DC_IMB_NONE = 0, DC_IMB_EXP, DC_IMB_STEP } dc_imb_type;
/* The trained classifier head (reference def_file DotProductClassifier / TauNormClassifier). */
typedef enum {
    DC_HEAD_LINEAR = 0, /* W x + b: joint training and cRT (DotProductClassifier) */
    DC_HEAD_LWS         /* (W x + b) * s, W and b frozen, per-class scales s learned (TauNormClassifier) */
} dc_head_type;
typedef enum { DC_AUG_NONE = 0, DC_AUG_CIFAR, DC_AUG_IMAGENET } dc_aug_type;

typedef struct {
    float lr;
    float momentum;
    float weight_decay;
} dc_optim_params;

typedef struct {
    dc_sampler_type type;
    int num_samples_cls; /* class-aware: k consecutive samples per class (default 4) */
    double q;            /* power sampler exponent (0.5 = square root) */
    int pb_epochs;       /* progressive: T (default: num_epochs) */
} dc_sampler_cfg;

typedef struct {
    dc_sched_type type;
    int per_step;                      /* cosine: anneal per step (1) or per epoch (0, the reference) */
    double warmup_epochs;              /* linear warm-up length in epochs (0: none) */
    double warmup_start;               /* warm-up starts at lr * warmup_start (BagofTricks: 1/3) */
    int milestones[DC_MAX_MILESTONES]; /* multistep: epochs where lr *= gamma */
    int num_milestones;
    double gamma;
    int reference_step_first; /* reproduce the reference's scheduler.step()-before-training off-by-one */
} dc_sched_cfg;

typedef struct {
    /* data */
    char dataset[DC_NAME_MAX];    /* fashion_mnist | mnist | cifar10 | cifar100 | list */
    char data_root[DC_PATH_MAX];  /* folder of the files (default per dataset) */
    char train_list[DC_PATH_MAX]; /* list datasets: "relative/path label" files */
    char val_list[DC_PATH_MAX];
    char test_list[DC_PATH_MAX];
    char class_names[DC_PATH_MAX]; /* optional, one name per line */
    dc_imb_type imb_type;          /* long-tailed subset of a balanced train set */
    double imb_factor;             /* r = n_max / n_min, >= 1 */
    double step_minor_frac;        /* step profile: fraction of classes that are minority (default 0.5) */
    int val_per_class; /* carve a balanced val split of this many per class from train (0: none) */
    int num_classes;
    int skip_bad_images; /* policy: skip unreadable images with a warning and a count */

    /* input and augmentation */
    int in_channels;
    int image_size;  /* network input is image_size x image_size */
    int resize_size; /* imagenet eval: Resize(resize_size) then CenterCrop(image_size) */
    float mean[DC_MAX_CHANNELS], std[DC_MAX_CHANNELS];
    dc_aug_type augment;
    int crop_padding; /* cifar: random crop with this zero padding */
    int hflip;
    float color_jitter; /* imagenet: brightness = contrast = saturation = this (0: off) */
    int decode_threads; /* streaming datasets: decoding pool size (0: auto) */

    /* loop */
    int batch_size; /* GLOBAL batch; per-rank batch = batch_size / world_size */
    int num_epochs;
    int64_t max_steps; /* stop after this many steps (0: no limit) */
    int display_step;
    int fixed_order; /* no shuffle, no augmentation: for tests and debugging */
    int shuffle;     /* shuffle inside each global batch before sharding (reference `shuffle`) */
    dc_sampler_cfg sampler;
    int skip_nonfinite_batches; /* skip up to this many batches whose loss or gradient is NaN/Inf (0: stop) */
    int64_t checkpoint_every;   /* steps between checkpoints (0: at the end of every epoch) */
    int keep_checkpoints;       /* complete checkpoints kept in log_dir/checkpoints (0: all) */
    char log_dir[DC_PATH_MAX];
    uint64_t seed;
} dc_training_opt;

typedef struct {
    char arch[DC_NAME_MAX]; /* resnet20..resnet110 (CIFAR), resnet10..resnet152, resnext50_32x4d */
    int fix;                /* freeze (stage 2) */
    dc_optim_params optim;
} dc_feat_model_cfg;

typedef struct {
    dc_head_type head; /* linear (joint, cRT) | lws */
    int feat_dim;      /* checked against the backbone; 0 = the backbone's */
    dc_optim_params optim;
} dc_classifier_cfg;

typedef struct {
    int nesterov;
    int no_decay_bn_bias;        /* exempt BN affine parameters and biases from weight decay */
    float loss_logit_adjust_tau; /* logit-adjusted / Balanced-Softmax loss: z + tau*log(pi) (0: plain CE) */
} dc_optim_cfg;

typedef enum { DC_FEATURES_CACHED = 0, DC_FEATURES_REEXTRACT } dc_feature_mode;

/* One trained stage-2 head (cRT or LWS). 0 in batch_size / lr means: take training_opt.batch_size /
 * networks.classifier.optim_params.lr. */
typedef struct {
    int num_epochs;
    int batch_size;
    float lr;
    float momentum;
    float weight_decay;
} dc_head_train_cfg;

typedef struct {
    int ncm, crt, tau_norm, lws, logit_adjust; /* which heads `decouple run` / `decouple heads` fit */
    int ncm_feat;                              /* 0 un, 1 l2n, 2 cl2n (default) */
    int ncm_dist;                              /* 0 l2 (default), 1 cos */
    int tau_keep_bias;           /* tau-norm keeps the bias (BagofTricks) instead of dropping it */
    dc_head_train_cfg crt_train; /* reference: 10 epochs (iNat 30), momentum 0.9, wd 5e-4, cosine */
    dc_head_train_cfg lws_train; /* reference: 5 epochs */
    int num_samples_cls;         /* class-aware sampler of cRT / LWS (4) */
    float crt_loss_tau;          /* cRT with the logit-adjusted loss: CE(z + tau log pi) (0: plain CE) */
    dc_feature_mode features;    /* cached (default) or re-extracted with training augmentation per batch */
    int distributed;             /* cRT / LWS trained on every rank (head gradients allreduced) instead of
                                    on rank 0 over gathered features */
    int save_features;           /* write the extracted features as .npy into log_dir/features */
} dc_stage2_cfg;

typedef struct {
    char source_path[DC_PATH_MAX]; /* the YAML file, for messages */
    dc_training_opt training_opt;
    dc_feat_model_cfg feat_model;
    dc_classifier_cfg classifier;
    dc_optim_cfg optimizer;
    dc_sched_cfg scheduler; /* `coslr: true` selects cosine, `endlr` is its floor */
    dc_stage2_cfg stage2;
    double endlr;
    char init_weights[DC_PATH_MAX]; /* initialise from this safetensors file ("" = random init) */
    char save_weights[DC_PATH_MAX]; /* write the final weights here ("" = log_dir/final.safetensors) */
    int sync_bn;                    /* distributed: allreduce BN statistics */
    double allreduce_bucket_mb;     /* gradient allreduce: buckets of this size overlapped with backward
                                       (MPI_Iallreduce); 0: one MPI_Allreduce of the whole slab after backward */
} dc_config;

/* Fills every field with its documented default. */
void dc_config_defaults(dc_config *cfg);

/* Reads `path` over the defaults. Returns DC_OK, or DC_FAIL with "path:line: key.path: what is wrong". */
int dc_config_load(dc_config *cfg, const char *path);

/* The same over text in memory (len bytes, no NUL needed); `what` names it in messages as the path does. For
 * tests and the fuzz target (tests/fuzz/fuzz_config.c). */
int dc_config_load_buffer(dc_config *cfg, const char *text, size_t len, const char *what);

/* Applies one "key.path=value" override (value in YAML scalar syntax). */
int dc_config_set(dc_config *cfg, const char *assignment);

/* Cross-field validation after loading and overrides (e.g. batch_size divisible by the world size is
 * checked by the trainer; here: known arch, known dataset, channel counts, milestone order). */
int dc_config_validate(const dc_config *cfg);

/* Writes the effective config as YAML (log_dir/config.yaml), so a run records exactly what it used. */
int dc_config_write(const dc_config *cfg, const char *path);

/* Writes the Markdown key reference (one table per section; generated from the key table, embedded in
 * docs/CONFIG.md and checked by tests/test_config.c). */
int dc_config_describe(FILE *out);

/* The i-th key path of the key table (every key the loader accepts), NULL past the end. */
const char *dc_config_key_path(int i);

/* 64-bit hash of the effective config (for checkpoints: a resume with a different config is refused). */
uint64_t dc_config_hash(const dc_config *cfg);

#endif /* DC_CONFIG_H */
