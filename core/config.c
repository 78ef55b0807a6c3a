/*
 * config.c: the YAML run configuration (core/config.h), driven by one declarative key table.
 *
 * Every key the loader accepts is one row of `keys[]`: its full dotted path, its kind (how the YAML value is
 * read), where it lands in dc_config, its range or allowed names, and a doc string. That single table drives
 *
 *   - loading (dc_config_load): libyaml parses the file into a document; the mappings are walked
 *     recursively, each "a.b.c" path is looked up in the table, and the value is checked and stored;
 *   - overrides (dc_config_set): "a.b.c=value" becomes the one-key document {a: {b: {c: value}}} and goes
 *     through the same walk, so an override is checked exactly like a file;
 *   - writing (dc_config_write): the native keys, in table order, as block YAML that loads back to the
 *     identical struct (floats are printed with the fewest digits that read back to the same value);
 *   - hashing (dc_config_hash): FNV-1a over the written text, minus the keys that cannot change results;
 *   - validation (dc_config_validate): every range again, plus the cross-field rules;
 *   - documentation (dc_config_describe): the Markdown key tables embedded in docs/CONFIG.md.
 *
 * Reference compatibility (facebookresearch/classifier-balancing): the reference's keys are rows too. Some
 * are aliases of a native key (model_dir -> init_weights), some convert (def_file strings -> arch / head,
 * coslr -> scheduler.type, nroot -> q), some are informational and ignored, and some must hold the one value
 * whose semantics decouple implements (memory.centroids: false). When two keys set the same field in one file
 * with different values (training_opt.num_classes and networks.classifier.params.num_classes), that is an
 * error.
 *
 * Errors read "path:line: key.path: what is wrong" (line = the YAML node's start line + 1). On any error the
 * caller's dc_config is left unchanged: the document is applied to a copy that is committed at the end.
 */
#include "config.h"
#include "atomic_file.h"
#include "check.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

_Static_assert(sizeof(dc_sched_type) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(dc_sampler_type) == sizeof(int), "enums are stored as int");
_Static_assert(sizeof(dc_head_type) == sizeof(int), "enums are stored as int");

#define CONFIG_MAX_FILE_BYTES (4u << 20) /* a config larger than this is certainly not a config */
#define KEY_PATH_MAX          256

/* ---- the key table ------------------------------------------------------------------------------------- */

typedef enum {
    /* values stored in a field of dc_config (written back by dc_config_write unless flagged REF) */
    K_BOOL,         /* int 0/1; YAML 1.1 booleans: true/false, yes/no, on/off */
    K_INT,          /* int */
    K_I64,          /* int64_t */
    K_U64,          /* uint64_t */
    K_FLOAT,        /* float, finite */
    K_DOUBLE,       /* double, finite */
    K_STR,          /* char[size]; null -> "" */
    K_ENUM,         /* int index into names[] */
    K_NAME,         /* char[size] holding one of names[] (arch) */
    K_DATASET,      /* char[size]: a dataset name, or a reference dataset name -> "list" + preset */
    K_FLOATS,       /* float[size], 1..size values (mean, std) */
    K_INTS,         /* int[size] + int count at count_off (milestones) */
    K_SAMPLER_TYPE, /* the sampler's type (native names, plus aliases and the reference class names) */
    /* reference-compatibility and structural kinds */
    K_ALIAS,       /* same value and checks as the key `canon` */
    K_SAMPLER,     /* training_opt.sampler: null or a mapping, dispatched on its `type` */
    K_COSLR,       /* bool -> scheduler.type */
    K_STEP_SIZE,   /* int -> scheduler.milestones (StepLR period) */
    K_NROOT,       /* number >= 1 or null -> sampler q = 1/nroot (null: 0) */
    K_ARCH_FILE,   /* reference backbone def_file -> networks.feat_model.arch */
    K_HEAD_FILE,   /* reference classifier def_file -> networks.classifier.head */
    K_LOSS_FILE,   /* reference loss def_file -> optimizer.loss_logit_adjust_tau */
    K_IGNORE,      /* any value, ignored */
    K_REQUIRE,     /* must hold the value `req` */
    K_UNSUPPORTED, /* any value is an error */
} key_kind;

enum {
    HAS_MIN = 1 << 0,
    HAS_MAX = 1 << 1,
    MIN_EXCL = 1 << 2,
    MAX_EXCL = 1 << 3,
    REF = 1 << 4,    /* a reference-implementation key: accepted, never written */
    NOHASH = 1 << 5, /* cannot change results (paths of outputs, logging): left out of dc_config_hash */
};

/* Sampler keys belong to the sampler types that accept them. */
enum { G_NATIVE = 1, G_CAS = 2, G_MPS = 4, G_CPS = 8, G_ALL = 15 };

typedef enum { REQ_FALSE, REQ_TRUE, REQ_NULL, REQ_NULL_OR_ZERO, REQ_NULL_OR_ONE, REQ_ZERO, REQ_ONE } req_kind;

typedef struct {
    const char *path;
    key_kind kind;
    size_t off;       /* offset of the field in dc_config */
    size_t size;      /* K_STR/K_NAME/K_DATASET: buffer bytes; K_FLOATS/K_INTS: capacity */
    size_t count_off; /* K_INTS: offset of the count */
    double min, max;
    unsigned flags;
    const char *const *names; /* K_ENUM, K_NAME, K_SAMPLER_TYPE: allowed names, NULL-terminated */
    const char *canon;        /* K_ALIAS and the converting kinds: the native key they set */
    unsigned groups;          /* training_opt.sampler.* keys: the sampler types they belong to; 0 elsewhere */
    req_kind req;
    const char *doc;
} dc_key;

#define OFF(member)  offsetof(dc_config, member)
#define SIZE(member) sizeof(((dc_config *)0)->member)

static const char *const sched_names[] = {"constant", "multistep", "cosine", NULL};
static const char *const imb_names[] = {"none", "exp", "step", NULL};
static const char *const aug_names[] = {"none", "cifar", "imagenet", NULL};
static const char *const sampler_names[] = {"instance_balanced", "class_aware", "power", "progressive", NULL};
static const char *const head_names[] = {"linear", "lws", NULL};
static const char *const ncm_feat_names[] = {"un", "l2n", "cl2n", NULL};
static const char *const ncm_dist_names[] = {"l2", "cos", NULL};
static const char *const feature_mode_names[] = {"cached", "reextract", NULL};
static const char *const dataset_names[] = {"fashion_mnist", "mnist", "cifar10", "cifar100", "list", NULL};

/* Backbones: name, pooled feature dimension, the reference's models/<file>.py (NULL: none there). */
// clang-format off
static const char *const arch_names[] = {
    "resnet8",  "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "resnet10", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", NULL};
static const int arch_feat_dim[] = {
    64,         64,         64,         64,         64,         64,
    512,        512,        512,        2048,       2048,        2048,        2048};
static const char *const arch_ref_file[] = {
    NULL,       NULL,       NULL,       NULL,       NULL,       NULL,
    "ResNet10Feature", NULL, NULL, "ResNet50Feature", "ResNet101Feature", "ResNet152Feature", "ResNext50Feature"};
// clang-format on
_Static_assert(sizeof arch_feat_dim / sizeof arch_feat_dim[0] + 1 ==
                       sizeof arch_names / sizeof arch_names[0] &&
                   sizeof arch_ref_file == sizeof arch_feat_dim / sizeof(int) * sizeof(char *),
               "one feature size and one reference file per arch");

/* The reference's dataset names: each selects dataset "list" with the reference's list files and
 * transforms (data/dataloader.py), applied to every key the file does not set itself. */
typedef struct {
    const char *name;
    int num_classes;
    float mean[3], std[3];
    float color_jitter; /* the reference drops ColorJitter for iNaturalist18 */
    int has_test;       /* iNaturalist18 has no test list: the reference reports on val */
} ref_dataset;

static const ref_dataset ref_datasets[] = {
    {"ImageNet_LT", 1000, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, 0.4f, 1},
    {"Places_LT", 365, {0.485f, 0.456f, 0.406f}, {0.229f, 0.224f, 0.225f}, 0.4f, 1},
    {"iNaturalist18", 8142, {0.466f, 0.471f, 0.380f}, {0.195f, 0.194f, 0.192f}, 0.0f, 0},
};
#define N_REF_DATASETS ((int)(sizeof ref_datasets / sizeof ref_datasets[0]))

#define OPTIM_KEYS(prefix, member, who)                                                                      \
    {.path = prefix ".optim_params.lr",                                                                      \
     .kind = K_FLOAT,                                                                                        \
     .off = OFF(member.lr),                                                                                  \
     .min = 0,                                                                                               \
     .max = 100,                                                                                             \
     .flags = HAS_MIN | HAS_MAX,                                                                             \
     .doc = "SGD learning rate of the " who " (the reference: 0.2 at batch 512, 0.1 per 256)"},              \
        {.path = prefix ".optim_params.momentum",                                                            \
         .kind = K_FLOAT,                                                                                    \
         .off = OFF(member.momentum),                                                                        \
         .min = 0,                                                                                           \
         .max = 1,                                                                                           \
         .flags = HAS_MIN | HAS_MAX | MAX_EXCL,                                                              \
         .doc = "SGD momentum of the " who},                                                                 \
    {                                                                                                        \
        .path = prefix ".optim_params.weight_decay", .kind = K_FLOAT, .off = OFF(member.weight_decay),       \
        .min = 0, .max = 1, .flags = HAS_MIN | HAS_MAX, .doc = "L2 weight decay of the " who                 \
    }

#define IGNORED(p, why)                                                                                      \
    { .path = p, .kind = K_IGNORE, .flags = REF, .doc = why }
#define REQUIRED(p, r, why)                                                                                  \
    { .path = p, .kind = K_REQUIRE, .flags = REF, .req = r, .doc = why }
#define ALIAS(p, c)                                                                                          \
    { .path = p, .kind = K_ALIAS, .flags = REF, .canon = c, .doc = "same as `" c "`" }

static const dc_key keys[] = {
    /* ---- top level ---- */
    {.path = "seed",
     .kind = K_U64,
     .off = OFF(training_opt.seed),
     .doc = "seed of every random stream (weight init, sampler, augmentation, val split); the reference has "
            "none"},
    {.path = "endlr",
     .kind = K_DOUBLE,
     .off = OFF(endlr),
     .min = 0,
     .flags = HAS_MIN,
     .doc = "cosine schedule: the learning rate it anneals to (PyTorch eta_min)"},
    {.path = "init_weights",
     .kind = K_STR,
     .off = OFF(init_weights),
     .size = SIZE(init_weights),
     .doc = "safetensors file to initialise from (\"\": random init); stage 2: the stage-1 model, whose fc "
            "a linear head re-initialises (cRT) and lws keeps"},
    {.path = "save_weights",
     .kind = K_STR,
     .off = OFF(save_weights),
     .size = SIZE(save_weights),
     .flags = NOHASH,
     .doc = "where the final weights go (\"\": log_dir/final.safetensors)"},
    {.path = "sync_bn",
     .kind = K_BOOL,
     .off = OFF(sync_bn),
     .doc = "distributed: allreduce the BatchNorm batch statistics (false: per-rank BN, like the reference's "
            "DataParallel)"},
    {.path = "allreduce_bucket_mb",
     .kind = K_DOUBLE,
     .off = OFF(allreduce_bucket_mb),
     .min = 0,
     .max = 4096,
     .flags = HAS_MIN | HAS_MAX | NOHASH,
     .doc =
         "gradient allreduce in buckets of this many MB, each started (MPI_Iallreduce) as soon as backward "
         "has finished its gradients; 0: one MPI_Allreduce of the whole gradient slab after backward"},

    /* ---- stage 2 ---- */
    {.path = "stage2.ncm", .kind = K_BOOL, .off = OFF(stage2.ncm), .doc = "fit the NCM head"},
    {.path = "stage2.crt",
     .kind = K_BOOL,
     .off = OFF(stage2.crt),
     .doc = "fit cRT (re-trained linear classifier)"},
    {.path = "stage2.tau_norm",
     .kind = K_BOOL,
     .off = OFF(stage2.tau_norm),
     .doc = "fit tau-norm, tau swept 0..2 step 0.1 and chosen on the val split"},
    {.path = "stage2.lws",
     .kind = K_BOOL,
     .off = OFF(stage2.lws),
     .doc = "fit LWS (learnable weight scaling)"},
    {.path = "stage2.logit_adjust",
     .kind = K_BOOL,
     .off = OFF(stage2.logit_adjust),
     .doc = "fit post-hoc logit adjustment z - tau log pi, tau swept and chosen on val like tau-norm"},
    {.path = "stage2.ncm_feat",
     .kind = K_ENUM,
     .off = OFF(stage2.ncm_feat),
     .names = ncm_feat_names,
     .doc = "NCM feature transform: un (raw), l2n (L2-normalised), cl2n (centred on the train mean, then "
            "L2-normalised; the reference's default)"},
    {.path = "stage2.ncm_dist",
     .kind = K_ENUM,
     .off = OFF(stage2.ncm_dist),
     .names = ncm_dist_names,
     .doc = "NCM distance: l2 (squared Euclidean) or cos"},
    {.path = "stage2.tau_keep_bias",
     .kind = K_BOOL,
     .off = OFF(stage2.tau_keep_bias),
     .doc = "tau-norm keeps the classifier bias (BagofTricks-LT) instead of dropping it (the reference)"},
    {.path = "stage2.crt_train.num_epochs",
     .kind = K_INT,
     .off = OFF(stage2.crt_train.num_epochs),
     .min = 1,
     .max = 100000,
     .flags = HAS_MIN | HAS_MAX,
     .doc = "cRT epochs (reference 10, iNaturalist 30)"},
    {.path = "stage2.crt_train.batch_size",
     .kind = K_INT,
     .off = OFF(stage2.crt_train.batch_size),
     .min = 0,
     .flags = HAS_MIN,
     .doc = "cRT global batch (0: training_opt.batch_size)"},
    {.path = "stage2.crt_train.lr",
     .kind = K_FLOAT,
     .off = OFF(stage2.crt_train.lr),
     .min = 0,
     .flags = HAS_MIN,
     .doc = "cRT learning rate, cosine to endlr (0: networks.classifier.optim_params.lr)"},
    {.path = "stage2.crt_train.momentum",
     .kind = K_FLOAT,
     .off = OFF(stage2.crt_train.momentum),
     .min = 0,
     .max = 1,
     .flags = HAS_MIN | HAS_MAX,
     .doc = "cRT SGD momentum"},
    {.path = "stage2.crt_train.weight_decay",
     .kind = K_FLOAT,
     .off = OFF(stage2.crt_train.weight_decay),
     .min = 0,
     .flags = HAS_MIN,
     .doc = "cRT weight decay"},
    {.path = "stage2.lws_train.num_epochs",
     .kind = K_INT,
     .off = OFF(stage2.lws_train.num_epochs),
     .min = 1,
     .max = 100000,
     .flags = HAS_MIN | HAS_MAX,
     .doc = "LWS epochs (reference 5)"},
    {.path = "stage2.lws_train.batch_size",
     .kind = K_INT,
     .off = OFF(stage2.lws_train.batch_size),
     .min = 0,
     .flags = HAS_MIN,
     .doc = "LWS global batch (0: training_opt.batch_size)"},
    {.path = "stage2.lws_train.lr",
     .kind = K_FLOAT,
     .off = OFF(stage2.lws_train.lr),
     .min = 0,
     .flags = HAS_MIN,
     .doc = "LWS learning rate, cosine to endlr (0: networks.classifier.optim_params.lr)"},
    {.path = "stage2.lws_train.momentum",
     .kind = K_FLOAT,
     .off = OFF(stage2.lws_train.momentum),
     .min = 0,
     .max = 1,
     .flags = HAS_MIN | HAS_MAX,
     .doc = "LWS SGD momentum"},
    {.path = "stage2.lws_train.weight_decay",
     .kind = K_FLOAT,
     .off = OFF(stage2.lws_train.weight_decay),
     .min = 0,
     .flags = HAS_MIN,
     .doc = "LWS weight decay (on the scales, as the reference)"},
    {.path = "stage2.num_samples_cls",
     .kind = K_INT,
     .off = OFF(stage2.num_samples_cls),
     .min = 1,
     .max = 1000000,
     .flags = HAS_MIN | HAS_MAX,
     .doc = "cRT / LWS class-aware sampler: consecutive samples per class"},
    {.path = "stage2.crt_loss_tau",
     .kind = K_FLOAT,
     .off = OFF(stage2.crt_loss_tau),
     .doc = "cRT loss CE(z + tau log pi): 1 = logit-adjusted / Balanced-Softmax loss (0: plain CE)"},
    {.path = "stage2.features",
     .kind = K_ENUM,
     .off = OFF(stage2.features),
     .names = feature_mode_names,
     .doc = "cached: features extracted once with eval transforms and frozen BN (fast); reextract: cRT/LWS "
            "batches re-extracted with training augmentation, BN in train mode as the reference"},
    {.path = "stage2.distributed",
     .kind = K_BOOL,
     .off = OFF(stage2.distributed),
     .doc = "train cRT / LWS on every rank with allreduced head gradients instead of on rank 0 over gathered "
            "features (for when rank 0's memory is too small)"},
    {.path = "stage2.save_features",
     .kind = K_BOOL,
     .off = OFF(stage2.save_features),
     .flags = NOHASH,
     .doc = "write train/val/test features, labels and fc weights as .npy into log_dir/features"},

    /* ---- scheduler ---- */
    {.path = "scheduler.type",
     .kind = K_ENUM,
     .off = OFF(scheduler.type),
     .names = sched_names,
     .doc = "learning-rate schedule: constant, multistep (lr *= gamma at each milestone) or cosine (lr to "
            "endlr over num_epochs)"},
    {.path = "scheduler.per_step",
     .kind = K_BOOL,
     .off = OFF(scheduler.per_step),
     .doc = "cosine: anneal after every step instead of once per epoch (the reference)"},
    {.path = "scheduler.warmup_epochs",
     .kind = K_DOUBLE,
     .off = OFF(scheduler.warmup_epochs),
     .min = 0,
     .flags = HAS_MIN,
     .doc = "linear warm-up length in epochs, may be fractional (0: none)"},
    {.path = "scheduler.warmup_start",
     .kind = K_DOUBLE,
     .off = OFF(scheduler.warmup_start),
     .min = 0,
     .max = 1,
     .flags = HAS_MIN | HAS_MAX | MIN_EXCL,
     .doc = "warm-up starts at lr * warmup_start and reaches lr after warmup_epochs"},
    {.path = "scheduler.milestones",
     .kind = K_INTS,
     .off = OFF(scheduler.milestones),
     .size = DC_MAX_MILESTONES,
     .count_off = OFF(scheduler.num_milestones),
     .min = 1,
     .flags = HAS_MIN,
     .doc = "multistep: the epochs after which lr is multiplied by gamma, strictly increasing"},
    {.path = "scheduler.gamma",
     .kind = K_DOUBLE,
     .off = OFF(scheduler.gamma),
     .min = 0,
     .max = 1,
     .flags = HAS_MIN | HAS_MAX | MIN_EXCL,
     .doc = "multistep: the decay factor"},
    {.path = "scheduler.reference_step_first",
     .kind = K_BOOL,
     .off = OFF(scheduler.reference_step_first),
     .doc = "reproduce the reference's scheduler.step() before each epoch: epoch 1 already runs decayed and "
            "the last epoch runs at endlr"},

    /* ---- optimizer ---- */
    {.path = "optimizer.nesterov",
     .kind = K_BOOL,
     .off = OFF(optimizer.nesterov),
     .doc = "Nesterov momentum"},
    {.path = "optimizer.no_decay_bn_bias",
     .kind = K_BOOL,
     .off = OFF(optimizer.no_decay_bn_bias),
     .doc = "no weight decay on BatchNorm weights/biases and on biases (the reference decays everything)"},
    {.path = "optimizer.loss_logit_adjust_tau",
     .kind = K_FLOAT,
     .off = OFF(optimizer.loss_logit_adjust_tau),
     .min = 0,
     .max = 10,
     .flags = HAS_MIN | HAS_MAX,
     .doc = "logit-adjusted cross-entropy on z + tau log(pi), pi the training class prior: 0 plain CE (the "
            "reference), 1 Balanced Softmax"},

    /* ---- training_opt: data ---- */
    {.path = "training_opt.dataset",
     .kind = K_DATASET,
     .off = OFF(training_opt.dataset),
     .size = SIZE(training_opt.dataset),
     .names = dataset_names,
     .doc = "fashion_mnist, mnist, cifar10, cifar100 or list (\"path label\" list files); the reference's "
            "ImageNet_LT, Places_LT and iNaturalist18 mean list plus that dataset's preset"},
    {.path = "training_opt.data_root",
     .kind = K_STR,
     .off = OFF(training_opt.data_root),
     .size = SIZE(training_opt.data_root),
     .flags = NOHASH,
     .doc = "folder of the dataset files; list entries are relative to it"},
    {.path = "training_opt.train_list",
     .kind = K_STR,
     .off = OFF(training_opt.train_list),
     .size = SIZE(training_opt.train_list),
     .doc = "list dataset: the training list, one \"relative/path label\" per line"},
    {.path = "training_opt.val_list",
     .kind = K_STR,
     .off = OFF(training_opt.val_list),
     .size = SIZE(training_opt.val_list),
     .doc = "list dataset: the validation list (\"\": none)"},
    {.path = "training_opt.test_list",
     .kind = K_STR,
     .off = OFF(training_opt.test_list),
     .size = SIZE(training_opt.test_list),
     .doc = "list dataset: the test list (\"\": none)"},
    {.path = "training_opt.class_names",
     .kind = K_STR,
     .off = OFF(training_opt.class_names),
     .size = SIZE(training_opt.class_names),
     .doc = "optional file with one class name per line, for reports (\"\": none)"},
    {.path = "training_opt.imb_type",
     .kind = K_ENUM,
     .off = OFF(training_opt.imb_type),
     .names = imb_names,
     .doc = "long-tailed subset of a balanced training set: none, exp (n_i = n_max r^(-i/(C-1))) or step"},
    {.path = "training_opt.imb_factor",
     .kind = K_DOUBLE,
     .off = OFF(training_opt.imb_factor),
     .min = 1,
     .flags = HAS_MIN,
     .doc = "imbalance ratio r = n_max / n_min of the long-tailed subset"},
    {.path = "training_opt.step_minor_frac",
     .kind = K_DOUBLE,
     .off = OFF(training_opt.step_minor_frac),
     .min = 0,
     .max = 1,
     .flags = HAS_MIN | HAS_MAX | MIN_EXCL | MAX_EXCL,
     .doc = "step profile: the fraction of classes (the last ones) that keep n_max / r samples"},
    {.path = "training_opt.val_per_class",
     .kind = K_INT,
     .off = OFF(training_opt.val_per_class),
     .min = 0,
     .flags = HAS_MIN,
     .doc = "carve a class-balanced validation split of this many images per class out of train (0: none)"},
    {.path = "training_opt.num_classes",
     .kind = K_INT,
     .off = OFF(training_opt.num_classes),
     .min = 2,
     .max = 1000000,
     .flags = HAS_MIN | HAS_MAX,
     .doc = "number of classes C"},
    {.path = "training_opt.skip_bad_images",
     .kind = K_BOOL,
     .off = OFF(training_opt.skip_bad_images),
     .doc = "skip unreadable images with a warning and a count (false: an unreadable image is an error)"},

    /* ---- training_opt: input and augmentation ---- */
    {.path = "training_opt.in_channels",
     .kind = K_INT,
     .off = OFF(training_opt.in_channels),
     .min = 1,
     .max = DC_MAX_CHANNELS,
     .flags = HAS_MIN | HAS_MAX,
     .doc = "input channels (1 grey, 3 RGB)"},
    {.path = "training_opt.image_size",
     .kind = K_INT,
     .off = OFF(training_opt.image_size),
     .min = 1,
     .max = 4096,
     .flags = HAS_MIN | HAS_MAX,
     .doc = "the network input is image_size x image_size"},
    {.path = "training_opt.resize_size",
     .kind = K_INT,
     .off = OFF(training_opt.resize_size),
     .min = 0,
     .max = 8192,
     .flags = HAS_MIN | HAS_MAX,
     .doc = "evaluation: Resize(resize_size) then CenterCrop(image_size) (0: no resize)"},
    {.path = "training_opt.mean",
     .kind = K_FLOATS,
     .off = OFF(training_opt.mean),
     .size = DC_MAX_CHANNELS,
     .doc = "normalisation mean, one value per input channel (pixels scaled to [0, 1] first)"},
    {.path = "training_opt.std",
     .kind = K_FLOATS,
     .off = OFF(training_opt.std),
     .size = DC_MAX_CHANNELS,
     .min = 0,
     .flags = HAS_MIN | MIN_EXCL,
     .doc = "normalisation standard deviation, one value > 0 per input channel"},
    {.path = "training_opt.augment",
     .kind = K_ENUM,
     .off = OFF(training_opt.augment),
     .names = aug_names,
     .doc =
         "training augmentation: none, cifar (zero-pad, random crop, flip) or imagenet (RandomResizedCrop, "
         "flip, colour jitter)"},
    {.path = "training_opt.crop_padding",
     .kind = K_INT,
     .off = OFF(training_opt.crop_padding),
     .min = 0,
     .max = 64,
     .flags = HAS_MIN | HAS_MAX,
     .doc = "cifar augmentation: zero padding around the random crop"},
    {.path = "training_opt.hflip",
     .kind = K_BOOL,
     .off = OFF(training_opt.hflip),
     .doc = "random horizontal flips in the cifar and imagenet augmentations"},
    {.path = "training_opt.color_jitter",
     .kind = K_FLOAT,
     .off = OFF(training_opt.color_jitter),
     .min = 0,
     .max = 1,
     .flags = HAS_MIN | HAS_MAX,
     .doc = "imagenet augmentation: brightness = contrast = saturation jitter (0: off; the reference 0.4, "
            "none for iNaturalist18)"},
    {.path = "training_opt.decode_threads",
     .kind = K_INT,
     .off = OFF(training_opt.decode_threads),
     .min = 0,
     .max = 256,
     .flags = HAS_MIN | HAS_MAX | NOHASH,
     .doc = "streaming datasets: size of the image-decoding pool (0: automatic)"},

    /* ---- training_opt: the loop ---- */
    {.path = "training_opt.batch_size",
     .kind = K_INT,
     .off = OFF(training_opt.batch_size),
     .min = 1,
     .max = 1 << 24,
     .flags = HAS_MIN | HAS_MAX,
     .doc = "GLOBAL batch size: each of P ranks gets batch_size / P; the lr is not rescaled (the reference)"},
    {.path = "training_opt.num_epochs",
     .kind = K_INT,
     .off = OFF(training_opt.num_epochs),
     .min = 1,
     .max = 1000000,
     .flags = HAS_MIN | HAS_MAX,
     .doc = "epochs; an epoch is floor(N / batch_size) steps whatever the sampler (the reference)"},
    {.path = "training_opt.max_steps",
     .kind = K_I64,
     .off = OFF(training_opt.max_steps),
     .min = 0,
     .flags = HAS_MIN | NOHASH,
     .doc = "stop after this many steps (0: no limit)"},
    {.path = "training_opt.display_step",
     .kind = K_INT,
     .off = OFF(training_opt.display_step),
     .min = 0,
     .flags = HAS_MIN | NOHASH,
     .doc = "print the training loss every this many steps (0: never)"},
    {.path = "training_opt.skip_nonfinite_batches",
     .kind = K_INT,
     .off = OFF(training_opt.skip_nonfinite_batches),
     .min = 0,
     .flags = HAS_MIN,
     .doc = "skip up to this many isolated batches whose loss or gradient is NaN/Inf, with a warning each "
            "(0: the first one stops training with the step and the layer)"},
    {.path = "training_opt.checkpoint_every",
     .kind = K_I64,
     .off = OFF(training_opt.checkpoint_every),
     .min = 0,
     .flags = HAS_MIN | NOHASH,
     .doc =
         "write a checkpoint every this many steps (0: at the end of every epoch); also on SIGTERM/SIGUSR1"},
    {.path = "training_opt.keep_checkpoints",
     .kind = K_INT,
     .off = OFF(training_opt.keep_checkpoints),
     .min = 0,
     .flags = HAS_MIN | NOHASH,
     .doc = "complete checkpoints kept in log_dir/checkpoints (0: all)"},
    {.path = "training_opt.fixed_order",
     .kind = K_BOOL,
     .off = OFF(training_opt.fixed_order),
     .doc = "no shuffling and no augmentation (tests, debugging)"},
    {.path = "training_opt.shuffle",
     .kind = K_BOOL,
     .off = OFF(training_opt.shuffle),
     .doc = "shuffle inside each global batch before sharding it across ranks (the reference's top-level "
            "shuffle; use it with class_aware, whose batches come in runs of one class)"},
    {.path = "training_opt.log_dir",
     .kind = K_STR,
     .off = OFF(training_opt.log_dir),
     .size = SIZE(training_opt.log_dir),
     .flags = NOHASH,
     .doc = "run folder: config.yaml, logs, checkpoints"},
    {.path = "training_opt.sampler",
     .kind = K_SAMPLER,
     .doc = "null (instance-balanced) or a mapping with a type; its keys are listed under "
            "training_opt.sampler"},

    /* ---- training_opt.sampler (dispatched on type) ---- */
    {.path = "training_opt.sampler.type",
     .kind = K_SAMPLER_TYPE,
     .off = OFF(training_opt.sampler.type),
     .names = sampler_names,
     .groups = G_ALL,
     .doc = "instance_balanced (q = 1: plain shuffle), class_aware (q = 0: classes round-robin in random "
            "order, num_samples_cls consecutive samples each), power (i.i.d. draws, class mass n_j^q) or "
            "progressive (p_j(t) = (1 - t/T) p_IB + (t/T) p_CB); also class_balanced (= class_aware), "
            "square_root (= power, q 0.5) and the reference's ClassAwareSampler, MixedPrioritizedSampler, "
            "ClassPrioritySampler"},
    {.path = "training_opt.sampler.num_samples_cls",
     .kind = K_INT,
     .off = OFF(training_opt.sampler.num_samples_cls),
     .min = 1,
     .max = 4096,
     .flags = HAS_MIN | HAS_MAX,
     .groups = G_NATIVE | G_CAS,
     .doc = "class_aware: consecutive samples drawn from each visited class (every reference config: 4)"},
    {.path = "training_opt.sampler.q",
     .kind = K_DOUBLE,
     .off = OFF(training_opt.sampler.q),
     .min = 0,
     .max = 1,
     .flags = HAS_MIN | HAS_MAX,
     .groups = G_NATIVE,
     .doc = "power: the exponent q of the class mass n_j^q (0.5: square root)"},
    {.path = "training_opt.sampler.pb_epochs",
     .kind = K_INT,
     .off = OFF(training_opt.sampler.pb_epochs),
     .min = 0,
     .max = 1000000,
     .flags = HAS_MIN | HAS_MAX,
     .groups = G_NATIVE,
     .doc = "progressive: T, the epochs of the ramp from instance- to class-balanced (0: num_epochs)"},

    /* ---- networks.feat_model ---- */
    {.path = "networks.feat_model.arch",
     .kind = K_NAME,
     .off = OFF(feat_model.arch),
     .size = SIZE(feat_model.arch),
     .names = arch_names,
     .doc = "backbone: resnet8/20/32/44/56/110 (CIFAR, 64-d feature; resnet8 is for tests), resnet10/18/34 "
            "(512-d), "
            "resnet50/101/152 or resnext50_32x4d (2048-d)"},
    {.path = "networks.feat_model.fix",
     .kind = K_BOOL,
     .off = OFF(feat_model.fix),
     .doc = "freeze the backbone (stage 2: cRT, LWS); its BN running statistics still update (the "
            "reference)"},
    OPTIM_KEYS("networks.feat_model", feat_model.optim, "backbone"),

    /* ---- networks.classifier ---- */
    {.path = "networks.classifier.head",
     .kind = K_ENUM,
     .off = OFF(classifier.head),
     .names = head_names,
     .doc = "linear (W x + b: joint training, cRT) or lws ((W x + b) * s with W, b frozen and per-class "
            "scales s learned)"},
    {.path = "networks.classifier.params.feat_dim",
     .kind = K_INT,
     .off = OFF(classifier.feat_dim),
     .min = 0,
     .max = 65536,
     .flags = HAS_MIN | HAS_MAX,
     .doc = "feature dimension, checked against the backbone (0: the backbone's)"},
    OPTIM_KEYS("networks.classifier", classifier.optim, "classifier"),

    /* ---- keys of the reference implementation ---- */
    {.path = "coslr",
     .kind = K_COSLR,
     .flags = REF,
     .canon = "scheduler.type",
     .doc = "true: scheduler.type cosine; false: multistep when training_opt.scheduler_params.step_size is "
            "given, else constant"},
    IGNORED("last", "ignored (an OLTR leftover the reference never reads)"),
    ALIAS("model_dir", "init_weights"),
    ALIAS("shuffle", "training_opt.shuffle"),
    REQUIRED("memory.centroids", REQ_FALSE, "OLTR's meta-embedding memory is not implemented"),
    REQUIRED("memory.init_centroids", REQ_FALSE, "OLTR's meta-embedding memory is not implemented"),
    {.path = "criterions.PerformanceLoss.def_file",
     .kind = K_LOSS_FILE,
     .flags = REF,
     .canon = "optimizer.loss_logit_adjust_tau",
     .doc = "./loss/SoftmaxLoss.py: plain cross-entropy (loss_logit_adjust_tau 0); "
            "./loss/BalancedSoftmaxLoss.py (BALMS): loss_logit_adjust_tau 1"},
    IGNORED(
        "criterions.PerformanceLoss.loss_params",
        "ignored (SoftmaxLoss takes none; BalancedSoftmax's freq_path is replaced by the training counts)"),
    REQUIRED("criterions.PerformanceLoss.optim_params", REQ_NULL, "the loss has no learnable parameters"),
    REQUIRED("criterions.PerformanceLoss.weight", REQ_ONE, "the loss is not rescaled"),
    {.path = "criterions.FeatureLoss",
     .kind = K_UNSUPPORTED,
     .flags = REF,
     .doc = "not supported: OLTR's DiscCentroidsLoss is not implemented"},
    ALIAS("training_opt.seed", "seed"),
    IGNORED("training_opt.backbone", "informational, ignored (the reference never reads it)"),
    IGNORED("training_opt.stage", "informational, ignored (the reference never reads it)"),
    IGNORED("training_opt.sub_dir", "informational, ignored (the reference never reads it)"),
    IGNORED("training_opt.log_root", "informational, ignored (the reference never reads it)"),
    IGNORED("training_opt.num_workers", "ignored (decoding threads: training_opt.decode_threads)"),
    IGNORED("training_opt.open_threshold", "ignored (OLTR's open-set evaluation is not implemented)"),
    ALIAS("training_opt.feature_dim", "networks.classifier.params.feat_dim"),
    ALIAS("training_opt.scheduler_params.gamma", "scheduler.gamma"),
    {.path = "training_opt.scheduler_params.step_size",
     .kind = K_STEP_SIZE,
     .min = 1,
     .flags = HAS_MIN | REF,
     .canon = "scheduler.milestones",
     .doc = "StepLR period: when the schedule is multistep and scheduler.milestones is not given, the "
            "milestones are step_size, 2 step_size, ... below num_epochs"},
    {.path = "training_opt.sampler.def_file",
     .kind = K_IGNORE,
     .flags = REF,
     .groups = G_ALL,
     .doc = "ignored (the sampler is chosen by type)"},
    {.path = "training_opt.sampler.nroot",
     .kind = K_NROOT,
     .flags = REF,
     .groups = G_MPS,
     .canon = "training_opt.sampler.q",
     .doc = "required: q = 1/nroot (2.0: square root); null: q = 0 (class-balanced, i.i.d.)"},
    {.path = "training_opt.sampler.lam",
     .kind = K_REQUIRE,
     .flags = REF,
     .groups = G_MPS,
     .req = REQ_NULL_OR_ONE,
     .doc = "mixing with loss-based priorities is not implemented"},
    {.path = "training_opt.sampler.manual_only",
     .kind = K_REQUIRE,
     .flags = REF,
     .groups = G_MPS | G_CPS,
     .req = REQ_TRUE,
     .doc = "loss-based priorities are not implemented"},
    {.path = "training_opt.sampler.root_decay",
     .kind = K_REQUIRE,
     .flags = REF,
     .groups = G_MPS | G_CPS,
     .req = REQ_NULL,
     .doc = "a growing nroot is not implemented"},
    {.path = "training_opt.sampler.rescale",
     .kind = K_REQUIRE,
     .flags = REF,
     .groups = G_MPS | G_CPS,
     .req = REQ_FALSE,
     .doc = "priority rescaling is not implemented"},
    {.path = "training_opt.sampler.epochs",
     .kind = K_ALIAS,
     .flags = REF,
     .groups = G_CPS,
     .canon = "training_opt.sampler.pb_epochs",
     .doc = "same as `training_opt.sampler.pb_epochs`"},
    {.path = "training_opt.sampler.lam",
     .kind = K_REQUIRE,
     .flags = REF,
     .groups = G_CPS,
     .req = REQ_NULL,
     .doc = "a fixed mixing weight is not implemented; null is the linear ramp over epochs"},
    {.path = "training_opt.sampler.cycle",
     .kind = K_REQUIRE,
     .flags = REF,
     .groups = G_CPS,
     .req = REQ_ZERO,
     .doc = "periodic and triangular ramps are not implemented"},
    {.path = "training_opt.sampler.nroot",
     .kind = K_REQUIRE,
     .flags = REF,
     .groups = G_CPS,
     .req = REQ_NULL,
     .doc = "the progressive ramp ends at class-balanced"},
    {.path = "training_opt.sampler.epochs",
     .kind = K_IGNORE,
     .flags = REF,
     .groups = G_MPS,
     .doc = "ignored (only used with root_decay)"},
    {.path = "training_opt.sampler.cycle",
     .kind = K_IGNORE,
     .flags = REF,
     .groups = G_MPS,
     .doc = "ignored (only used with root_decay)"},
    {.path = "training_opt.sampler.decay_gap",
     .kind = K_IGNORE,
     .flags = REF,
     .groups = G_MPS | G_CPS,
     .doc = "ignored (only used with root_decay)"},
    {.path = "training_opt.sampler.alpha",
     .kind = K_IGNORE,
     .flags = REF,
     .groups = G_MPS | G_CPS,
     .doc = "ignored (a priority option, inactive with manual_only)"},
    {.path = "training_opt.sampler.ptype",
     .kind = K_IGNORE,
     .flags = REF,
     .groups = G_MPS | G_CPS,
     .doc = "ignored (a priority option, inactive with manual_only)"},
    {.path = "training_opt.sampler.fixed_scale",
     .kind = K_IGNORE,
     .flags = REF,
     .groups = G_MPS | G_CPS,
     .doc = "ignored (a priority option, inactive with manual_only)"},
    {.path = "training_opt.sampler.balance_scale",
     .kind = K_IGNORE,
     .flags = REF,
     .groups = G_MPS | G_CPS,
     .doc = "ignored (scales every weight alike, so the distribution is unchanged)"},
    {.path = "training_opt.sampler.pri_mode",
     .kind = K_IGNORE,
     .flags = REF,
     .groups = G_CPS,
     .doc = "ignored (a priority option, inactive with manual_only)"},
    {.path = "training_opt.sampler.momentum",
     .kind = K_IGNORE,
     .flags = REF,
     .groups = G_CPS,
     .doc = "ignored (a priority option, inactive with manual_only)"},
    {.path = "networks.feat_model.def_file",
     .kind = K_ARCH_FILE,
     .flags = REF,
     .canon = "networks.feat_model.arch",
     .doc = "./models/ResNet10Feature.py, ResNet50Feature, ResNet101Feature, ResNet152Feature, "
            "ResNext50Feature (resnext50_32x4d), or a plain arch name"},
    ALIAS("networks.feat_model.params.in_channels", "training_opt.in_channels"),
    IGNORED("networks.feat_model.params.dataset", "informational, ignored"),
    IGNORED("networks.feat_model.params.log_dir", "informational, ignored"),
    IGNORED("networks.feat_model.params.stage1_weights", "ignored (unused by the reference too)"),
    REQUIRED("networks.feat_model.params.dropout", REQ_NULL_OR_ZERO, "dropout is not implemented"),
    REQUIRED("networks.feat_model.params.use_fc", REQ_FALSE, "the extra 2048-to-512 fc is not implemented"),
    REQUIRED("networks.feat_model.params.use_selfatt", REQ_FALSE,
             "OLTR's modulated attention is not implemented"),
    {.path = "networks.classifier.def_file",
     .kind = K_HEAD_FILE,
     .flags = REF,
     .canon = "networks.classifier.head",
     .doc = "./models/DotProductClassifier.py: linear; ./models/TauNormClassifier.py (the reference's LWS "
            "head): lws"},
    REQUIRED("networks.classifier.fix", REQ_FALSE,
             "the head always trains; freeze the backbone with networks.feat_model.fix"),
    ALIAS("networks.classifier.params.num_classes", "training_opt.num_classes"),
    IGNORED("networks.classifier.params.dataset", "informational, ignored"),
    IGNORED("networks.classifier.params.log_dir", "informational, ignored"),
    IGNORED("networks.classifier.params.stage1_weights", "ignored (unused by the reference too)"),
};
#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))

const char *dc_config_key_path(int i) {
    return (i >= 0 && i < N_KEYS) ? keys[i].path : NULL;
}

/* Index of the row with this path among the rows of `groups` (0: rows outside the sampler), or -1. */
static int find_key(const char *path, unsigned groups) {
    for (int i = 0; i < N_KEYS; i++) {
        if (strcmp(keys[i].path, path) != 0) continue;
        if (groups == 0 ? keys[i].groups == 0 : (keys[i].groups & groups) != 0) return i;
    }
    return -1;
}

static int key_index(const char *path) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(keys[i].path, path) == 0) return i;
    return -1;
}

/* The canonical row a row stores into (itself for plain kinds). */
static int canon_of(int idx) {
    if (!keys[idx].canon) return idx;
    int c = key_index(keys[idx].canon);
    return c >= 0 ? c : idx;
}

/* A path names a section when some row outside the sampler lies below it. */
static int is_section(const char *path) {
    size_t n = strlen(path);
    for (int i = 0; i < N_KEYS; i++)
        if (keys[i].groups == 0 && strncmp(keys[i].path, path, n) == 0 && keys[i].path[n] == '.') return 1;
    return 0;
}

static int value_bytes(const dc_key *k) {
    switch (k->kind) {
    case K_BOOL:
    case K_INT:
    case K_ENUM:
    case K_SAMPLER_TYPE:
        return (int)sizeof(int);
    case K_I64:
        return (int)sizeof(int64_t);
    case K_U64:
        return (int)sizeof(uint64_t);
    case K_FLOAT:
        return (int)sizeof(float);
    case K_DOUBLE:
        return (int)sizeof(double);
    case K_STR:
    case K_NAME:
    case K_DATASET:
        return (int)k->size;
    default:
        return 0;
    }
}

/* ---- defaults ------------------------------------------------------------------------------------------ */

static void set_str(char *dst, size_t size, const char *src) {
    memset(dst, 0, size);
    size_t n = strlen(src);
    memcpy(dst, src, n < size ? n : size - 1);
}

void dc_config_defaults(dc_config *cfg) {
    memset(cfg, 0, sizeof *cfg); /* also zeroes padding and unused array slots, so memcmp compares configs */
    dc_training_opt *t = &cfg->training_opt;
    set_str(t->dataset, sizeof t->dataset, "fashion_mnist");
    set_str(t->data_root, sizeof t->data_root, "/usr/share/datasets/fashion-mnist");
    t->imb_type = DC_IMB_NONE;
    t->imb_factor = 100.0; /* CIFAR-LT's usual r, used when imb_type is switched on */
    t->step_minor_frac = 0.5;
    t->val_per_class = 0;
    t->num_classes = 10;
    t->skip_bad_images = 0;
    t->in_channels = 1;
    t->image_size = 28;
    t->resize_size = 0;
    t->mean[0] = 0.2860f; /* Fashion-MNIST training-set pixel statistics on [0, 1] */
    t->std[0] = 0.3530f;
    t->augment = DC_AUG_NONE;
    t->crop_padding = 4;
    t->hflip = 1;
    t->color_jitter = 0.0f;
    t->decode_threads = 0;
    t->batch_size = 128;
    t->num_epochs = 2;
    t->max_steps = 0;
    t->display_step = 50;
    t->fixed_order = 0;
    t->shuffle = 0;
    t->checkpoint_every = 0;
    t->skip_nonfinite_batches = 0;
    t->keep_checkpoints = 3;
    t->sampler.type = DC_SAMPLER_INSTANCE;
    t->sampler.num_samples_cls = 4;
    t->sampler.q = 0.5;
    t->sampler.pb_epochs = 0;
    set_str(t->log_dir, sizeof t->log_dir, "runs/default");
    t->seed = 0;

    set_str(cfg->feat_model.arch, sizeof cfg->feat_model.arch, "resnet20");
    cfg->feat_model.fix = 0;
    cfg->feat_model.optim = (dc_optim_params){.lr = 0.1f, .momentum = 0.9f, .weight_decay = 5e-4f};
    cfg->classifier.head = DC_HEAD_LINEAR;
    cfg->classifier.feat_dim = 0;
    cfg->classifier.optim = cfg->feat_model.optim;

    cfg->optimizer.nesterov = 0;
    cfg->optimizer.no_decay_bn_bias = 0;
    cfg->optimizer.loss_logit_adjust_tau = 0.0f;

    cfg->scheduler.type = DC_SCHED_COSINE;
    cfg->scheduler.per_step = 0;
    cfg->scheduler.warmup_epochs = 0.0;
    cfg->scheduler.warmup_start = 1.0 / 3.0;
    cfg->scheduler.num_milestones = 0;
    cfg->scheduler.gamma = 0.1;
    cfg->scheduler.reference_step_first = 0;
    cfg->endlr = 0.0;
    cfg->sync_bn = 0;
    cfg->allreduce_bucket_mb = 25.0;
    cfg->stage2.ncm = cfg->stage2.crt = cfg->stage2.tau_norm = cfg->stage2.lws = cfg->stage2.logit_adjust = 1;
    cfg->stage2.ncm_feat = 2;
    cfg->stage2.ncm_dist = 0;
    cfg->stage2.tau_keep_bias = 0;
    cfg->stage2.crt_train = (dc_head_train_cfg){10, 0, 0.0f, 0.9f, 5e-4f};
    cfg->stage2.lws_train = (dc_head_train_cfg){5, 0, 0.0f, 0.9f, 5e-4f};
    cfg->stage2.num_samples_cls = 4;
    cfg->stage2.crt_loss_tau = 0.0f;
    cfg->stage2.features = DC_FEATURES_CACHED;
    cfg->stage2.distributed = 0;
    cfg->stage2.save_features = 0;
}

/* ---- value formatting (writer, docs, messages) --------------------------------------------------------- */

/* The shortest decimal that reads back (strtod) to exactly v; as_float compares in float precision. */
static void format_real(char *buf, size_t n, double v, int as_float) {
    if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, n, "%.0f", v); /* integers print as integers: 100, not 1e+02 */
        return;
    }
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        double back = strtod(buf, NULL);
        if (as_float ? (float)back == (float)v : back == v) return;
    }
    snprintf(buf, n, "%.17g", v);
}

/* YAML double-quoted string: backslash, quote and control bytes escaped; UTF-8 passes through. */
static void format_quoted(char *buf, size_t n, const char *s) {
    size_t o = 0;
    if (n < 3) return;
    buf[o++] = '"';
    for (; *s && o + 6 < n; s++) {
        unsigned char ch = (unsigned char)*s;
        if (ch == '"' || ch == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)ch;
        } else if (ch < 0x20 || ch == 0x7f) {
            o += (size_t)snprintf(buf + o, n - o, "\\x%02x", ch);
        } else {
            buf[o++] = (char)ch;
        }
    }
    buf[o++] = '"';
    buf[o] = '\0';
}

static const char *name_or(const char *const *names, int v) {
    for (int i = 0; names[i]; i++)
        if (i == v) return names[i];
    return "?";
}

/* The value of row k in cfg, as the writer prints it. */
static void format_value(const dc_key *k, const dc_config *cfg, char *buf, size_t n) {
    const char *p = (const char *)cfg + k->off;
    char tmp[64];
    switch (k->kind) {
    case K_BOOL:
        snprintf(buf, n, "%s", *(const int *)p ? "true" : "false");
        break;
    case K_INT:
        snprintf(buf, n, "%d", *(const int *)p);
        break;
    case K_I64:
        snprintf(buf, n, "%lld", (long long)*(const int64_t *)p);
        break;
    case K_U64:
        snprintf(buf, n, "%llu", (unsigned long long)*(const uint64_t *)p);
        break;
    case K_FLOAT:
        format_real(buf, n, *(const float *)p, 1);
        break;
    case K_DOUBLE:
        format_real(buf, n, *(const double *)p, 0);
        break;
    case K_STR:
        format_quoted(buf, n, p);
        break;
    case K_NAME:
    case K_DATASET:
        snprintf(buf, n, "%s", p);
        break; /* validated names need no quotes */
    case K_ENUM:
    case K_SAMPLER_TYPE:
        snprintf(buf, n, "%s", name_or(k->names, *(const int *)p));
        break;
    case K_FLOATS: {
        int count = cfg->training_opt.in_channels;
        if (count < 1) count = 1;
        if (count > (int)k->size) count = (int)k->size;
        size_t o = (size_t)snprintf(buf, n, "[");
        for (int i = 0; i < count && o < n; i++) {
            format_real(tmp, sizeof tmp, ((const float *)p)[i], 1);
            o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", tmp);
        }
        if (o < n) snprintf(buf + o, n - o, "]");
        break;
    }
    case K_INTS: {
        int count = *(const int *)((const char *)cfg + k->count_off);
        if (count < 0) count = 0;
        if (count > (int)k->size) count = (int)k->size;
        size_t o = (size_t)snprintf(buf, n, "[");
        for (int i = 0; i < count && o < n; i++)
            o += (size_t)snprintf(buf + o, n - o, "%s%d", i ? ", " : "", ((const int *)p)[i]);
        if (o < n) snprintf(buf + o, n - o, "]");
        break;
    }
    default:
        snprintf(buf, n, "-");
        break;
    }
}

/* " in [1, 4]", " >= 0", " > 0", "" */
static void format_range(const dc_key *k, char *buf, size_t n) {
    unsigned f = k->flags;
    char lo[32], hi[32];
    format_real(lo, sizeof lo, k->min, 0);
    format_real(hi, sizeof hi, k->max, 0);
    if ((f & HAS_MIN) && (f & HAS_MAX))
        snprintf(buf, n, " in %c%s, %s%c", (f & MIN_EXCL) ? '(' : '[', lo, hi, (f & MAX_EXCL) ? ')' : ']');
    else if (f & HAS_MIN)
        snprintf(buf, n, " %s %s", (f & MIN_EXCL) ? ">" : ">=", lo);
    else if (f & HAS_MAX)
        snprintf(buf, n, " %s %s", (f & MAX_EXCL) ? "<" : "<=", hi);
    else
        buf[0] = '\0';
}

static void format_names(const char *const *names, char *buf, size_t n) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; names[i] && o < n; i++)
        o += (size_t)snprintf(buf + o, n - o, "%s%s", i ? ", " : "", names[i]);
}

/* What a row expects, for messages: "an integer >= 1", "one of none, exp, step", ... */
static void format_expect(const dc_key *k, char *buf, size_t n) {
    char range[96], names[512];
    format_range(k, range, sizeof range);
    switch (k->kind) {
    case K_BOOL:
        snprintf(buf, n, "true or false");
        break;
    case K_INT:
    case K_I64:
    case K_U64:
    case K_INTS:
    case K_STEP_SIZE:
        snprintf(buf, n, "an integer%s", range);
        break;
    case K_FLOAT:
    case K_DOUBLE:
    case K_FLOATS:
        snprintf(buf, n, "a finite number%s", range);
        break;
    case K_ENUM:
    case K_NAME:
    case K_SAMPLER_TYPE:
        format_names(k->names, names, sizeof names);
        snprintf(buf, n, "one of %s", names);
        break;
    default:
        snprintf(buf, n, "a string");
        break;
    }
}

/* ---- the loader ---------------------------------------------------------------------------------------- */

typedef struct {
    const char *name; /* file name, or "--set" */
    int lines;        /* messages carry line numbers (files) */
    yaml_document_t *doc;
    dc_config *cfg; /* the working copy */
    int seen_line[N_KEYS];
    int seen_by[N_KEYS];
    int mean_count, std_count;
    int mean_line, std_line;
    int coslr_false_line;
    int step_size, step_size_line;
    int preset; /* index into ref_datasets, -1: none */
    int preset_line;
} load_ctx;

static int node_line(const yaml_node_t *n) {
    return n ? (int)n->start_mark.line + 1 : 0;
}

DC_PRINTF(4, 5)
static int fail(const load_ctx *c, const yaml_node_t *n, const char *path, const char *fmt, ...) {
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char where[DC_PATH_MAX + 32];
    if (c->lines && n)
        snprintf(where, sizeof where, "%s:%d", c->name, node_line(n));
    else
        snprintf(where, sizeof where, "%s", c->name);
    if (path && path[0]) return DC_ERR("%s: %s: %s", where, path, msg);
    return DC_ERR("%s: %s", where, msg);
}

static const char *scalar(const yaml_node_t *n) {
    return (const char *)n->data.scalar.value;
}

static int is_plain(const yaml_node_t *n) {
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static int is_null(const yaml_node_t *n) {
    if (!is_plain(n)) return 0;
    const char *s = scalar(n);
    return !strcmp(s, "") || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
           !strcmp(s, "NULL");
}

/* YAML 1.1 booleans (what the reference's PyYAML reads): 1 true, 0 false, -1 neither. */
static int parse_bool_text(const char *s) {
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON", NULL};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF", NULL};
    for (int i = 0; yes[i]; i++)
        if (!strcmp(s, yes[i])) return 1;
    for (int i = 0; no[i]; i++)
        if (!strcmp(s, no[i])) return 0;
    return -1;
}

/* ", got 'abc'" / ", got a mapping" / ", got null" / ", got the quoted string '512'" */
static void describe_got(const yaml_node_t *n, char *buf, size_t size) {
    if (n->type == YAML_MAPPING_NODE)
        snprintf(buf, size, "a mapping");
    else if (n->type == YAML_SEQUENCE_NODE)
        snprintf(buf, size, "a list");
    else if (is_null(n))
        snprintf(buf, size, "null");
    else if (!is_plain(n))
        snprintf(buf, size, "the quoted string '%.80s'", scalar(n));
    else
        snprintf(buf, size, "'%.80s'", scalar(n));
}

static int fail_expect(const load_ctx *c, const dc_key *k, const yaml_node_t *n, const char *path,
                       const char *extra) {
    char expect[600], got[128];
    format_expect(k, expect, sizeof expect);
    describe_got(n, got, sizeof got);
    return fail(c, n, path, "expected %s, got %s%s", expect, got, extra ? extra : "");
}

static int in_range(const dc_key *k, double v) {
    if (k->flags & HAS_MIN) {
        if ((k->flags & MIN_EXCL) ? !(v > k->min) : !(v >= k->min)) return 0;
    }
    if (k->flags & HAS_MAX) {
        if ((k->flags & MAX_EXCL) ? !(v < k->max) : !(v <= k->max)) return 0;
    }
    return 1;
}

/* Integers: plain decimal scalars, overflow detected with errno; then the row's range and [lo, hi]. */
static int parse_integer(const load_ctx *c, const dc_key *k, const yaml_node_t *n, const char *path,
                         long long lo, long long hi, long long *out) {
    if (n->type != YAML_SCALAR_NODE || is_null(n) || !is_plain(n)) return fail_expect(c, k, n, path, NULL);
    const char *s = scalar(n);
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (end == s || *end != '\0' || s[0] == ' ') return fail_expect(c, k, n, path, NULL);
    if (errno == ERANGE || v < lo || v > hi) return fail_expect(c, k, n, path, " (out of range)");
    if (!in_range(k, (double)v)) return fail_expect(c, k, n, path, NULL);
    *out = v;
    return DC_OK;
}

static int parse_u64(const load_ctx *c, const dc_key *k, const yaml_node_t *n, const char *path,
                     uint64_t *out) {
    if (n->type != YAML_SCALAR_NODE || is_null(n) || !is_plain(n)) return fail_expect(c, k, n, path, NULL);
    const char *s = scalar(n);
    char *end;
    if (s[0] == '-' || s[0] == ' ' || s[0] == '\0') return fail_expect(c, k, n, path, NULL);
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0') return fail_expect(c, k, n, path, NULL);
    if (errno == ERANGE) return fail_expect(c, k, n, path, " (out of range)");
    *out = (uint64_t)v;
    return DC_OK;
}

/* Finite reals: decimal or exponent notation; YAML's .inf/.nan, C's inf/nan and hex floats are refused. */
static int parse_real(const load_ctx *c, const dc_key *k, const yaml_node_t *n, const char *path,
                      int as_float, double *out) {
    if (n->type != YAML_SCALAR_NODE || is_null(n) || !is_plain(n)) return fail_expect(c, k, n, path, NULL);
    const char *s = scalar(n);
    for (const char *q = s; *q; q++) {
        if (!strchr("0123456789+-.eE", *q)) {
            const char *t = s + (s[0] == '+' || s[0] == '-');
            if (!strcasecmp(t, ".inf") || !strcasecmp(t, "inf") || !strcasecmp(t, "infinity") ||
                !strcasecmp(t, ".nan") || !strcasecmp(t, "nan"))
                return fail_expect(c, k, n, path, " (not finite)");
            return fail_expect(c, k, n, path, NULL);
        }
    }
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0') return fail_expect(c, k, n, path, NULL);
    if ((errno == ERANGE && fabs(v) > 1.0) || !isfinite(v) || (as_float && fabs(v) > FLT_MAX))
        return fail_expect(c, k, n, path, " (out of range)");
    if (!in_range(k, v)) return fail_expect(c, k, n, path, NULL);
    *out = v;
    return DC_OK;
}

static int parse_string(const load_ctx *c, const yaml_node_t *n, const char *path, char *buf, size_t size) {
    if (n->type != YAML_SCALAR_NODE) {
        char got[128];
        describe_got(n, got, sizeof got);
        return fail(c, n, path, "expected a string, got %s", got);
    }
    memset(buf, 0, size);
    if (is_null(n)) return DC_OK;
    size_t len = n->data.scalar.length;
    if (strlen(scalar(n)) != len) return fail(c, n, path, "the string contains a NUL byte");
    if (len >= size)
        return fail(c, n, path, "the string is too long (%zu bytes, at most %zu)", len, size - 1);
    memcpy(buf, scalar(n), len);
    return DC_OK;
}

static int parse_name(const load_ctx *c, const dc_key *k, const yaml_node_t *n, const char *path, int *out) {
    if (n->type == YAML_SCALAR_NODE && !is_null(n)) {
        for (int i = 0; k->names[i]; i++)
            if (!strcmp(scalar(n), k->names[i])) {
                *out = i;
                return DC_OK;
            }
    }
    return fail_expect(c, k, n, path, NULL);
}

/* Stores a value into the canonical row `canon` on behalf of row `setter`. Two keys of one document that
 * set the same field must agree. */
static int assign(load_ctx *c, int canon, int setter, const yaml_node_t *n, const char *path,
                  const void *val) {
    const dc_key *k = &keys[canon];
    int bytes = value_bytes(k);
    char *field = (char *)c->cfg + k->off;
    if (c->seen_line[canon] && memcmp(field, val, (size_t)bytes) != 0) {
        const int by = c->seen_by[canon];
        if (c->lines)
            return fail(c, n, path, "conflicts with '%s' at line %d", keys[by].path, c->seen_line[canon]);
        return fail(c, n, path, "conflicts with '%s'", keys[by].path);
    }
    memcpy(field, val, (size_t)bytes);
    c->seen_line[canon] = c->lines ? node_line(n) : 1;
    c->seen_by[canon] = setter;
    return DC_OK;
}

/* Reads a plain value of row `k` (the canonical row's kind) into val. */
static int parse_plain(load_ctx *c, const dc_key *k, const yaml_node_t *n, const char *path, void *val) {
    long long iv;
    double dv;
    int e = 0;
    switch (k->kind) {
    case K_BOOL:
        if (n->type != YAML_SCALAR_NODE || !is_plain(n) || (e = parse_bool_text(scalar(n))) < 0)
            return fail_expect(c, k, n, path, NULL);
        *(int *)val = e;
        return DC_OK;
    case K_INT:
        DC_TRY(parse_integer(c, k, n, path, INT_MIN, INT_MAX, &iv));
        *(int *)val = (int)iv;
        return DC_OK;
    case K_I64:
        DC_TRY(parse_integer(c, k, n, path, LLONG_MIN, LLONG_MAX, &iv));
        *(int64_t *)val = (int64_t)iv;
        return DC_OK;
    case K_U64:
        return parse_u64(c, k, n, path, (uint64_t *)val);
    case K_FLOAT:
        DC_TRY(parse_real(c, k, n, path, 1, &dv));
        *(float *)val = (float)dv;
        return DC_OK;
    case K_DOUBLE:
        DC_TRY(parse_real(c, k, n, path, 0, &dv));
        *(double *)val = dv;
        return DC_OK;
    case K_STR:
        return parse_string(c, n, path, (char *)val, k->size);
    case K_ENUM:
    case K_SAMPLER_TYPE:
        return parse_name(c, k, n, path, (int *)val);
    case K_NAME:
        DC_TRY(parse_name(c, k, n, path, &e));
        set_str((char *)val, k->size, k->names[e]);
        return DC_OK;
    default:
        return fail(c, n, path, "internal error: key kind %d is not a plain value", (int)k->kind);
    }
}

static int parse_list(load_ctx *c, int idx, const yaml_node_t *n, const char *path) {
    const dc_key *k = &keys[idx];
    char *field = (char *)c->cfg + k->off;
    const int is_int = k->kind == K_INTS;
    if (is_int && n->type == YAML_SCALAR_NODE && is_null(n)) {
        memset(field, 0, k->size * sizeof(int));
        *(int *)((char *)c->cfg + k->count_off) = 0;
        c->seen_line[idx] = c->lines ? node_line(n) : 1;
        return DC_OK;
    }
    if (n->type != YAML_SEQUENCE_NODE) {
        char got[128], expect[256];
        describe_got(n, got, sizeof got);
        format_expect(k, expect, sizeof expect);
        return fail(c, n, path, "expected a list of %s values (each %s), got %s",
                    is_int ? "integer" : "numeric", expect, got);
    }
    int count = (int)(n->data.sequence.items.top - n->data.sequence.items.start);
    if (count > (int)k->size)
        return fail(c, n, path, "expected at most %d values, got %d", (int)k->size, count);
    if (!is_int && count < 1)
        return fail(c, n, path, "expected 1 to %d values, got an empty list", (int)k->size);
    int ivals[DC_MAX_MILESTONES] = {0};
    float fvals[DC_MAX_CHANNELS] = {0};
    for (int i = 0; i < count; i++) {
        yaml_node_t *item = yaml_document_get_node(c->doc, n->data.sequence.items.start[i]);
        char ipath[KEY_PATH_MAX + 16];
        snprintf(ipath, sizeof ipath, "%s[%d]", path, i);
        if (is_int) {
            long long v;
            DC_TRY(parse_integer(c, k, item, ipath, INT_MIN, INT_MAX, &v));
            ivals[i] = (int)v;
        } else {
            double v;
            DC_TRY(parse_real(c, k, item, ipath, 1, &v));
            fvals[i] = (float)v;
        }
    }
    if (is_int) {
        memcpy(field, ivals, sizeof ivals);
        *(int *)((char *)c->cfg + k->count_off) = count;
    } else {
        memcpy(field, fvals, sizeof fvals);
        if (!strcmp(k->path, "training_opt.mean")) c->mean_count = count, c->mean_line = node_line(n);
        if (!strcmp(k->path, "training_opt.std")) c->std_count = count, c->std_line = node_line(n);
    }
    c->seen_line[idx] = c->lines ? node_line(n) : 1;
    return DC_OK;
}

/* "./models/ResNet50Feature.py" -> "ResNet50Feature" */
static void def_file_stem(const char *s, char *out, size_t n) {
    const char *base = strrchr(s, '/');
    base = base ? base + 1 : s;
    set_str(out, n, base);
    size_t len = strlen(out);
    if (len > 3 && !strcmp(out + len - 3, ".py")) out[len - 3] = '\0';
}

static int check_require(load_ctx *c, const dc_key *k, const yaml_node_t *n, const char *path) {
    static const char *const want[] = {"false", "true", "null", "null or 0", "null or 1.0", "0", "1.0"};
    int ok = 0;
    if (n->type == YAML_SCALAR_NODE) {
        const int null = is_null(n), plain = is_plain(n);
        const int b = plain ? parse_bool_text(scalar(n)) : -1;
        char *end;
        double v = NAN;
        if (plain && !null) {
            v = strtod(scalar(n), &end);
            if (*end != '\0' || end == scalar(n)) v = NAN;
        }
        switch (k->req) {
        case REQ_FALSE:
            ok = null || b == 0;
            break;
        case REQ_TRUE:
            ok = b == 1;
            break;
        case REQ_NULL:
            ok = null;
            break;
        case REQ_NULL_OR_ZERO:
            ok = null || v == 0.0;
            break;
        case REQ_NULL_OR_ONE:
            ok = null || v == 1.0;
            break;
        case REQ_ZERO:
            ok = v == 0.0;
            break;
        case REQ_ONE:
            ok = v == 1.0;
            break;
        }
    }
    if (ok) return DC_OK;
    char got[128];
    describe_got(n, got, sizeof got);
    return fail(c, n, path, "expected %s, got %s (%s)", want[k->req], got, k->doc);
}

static int walk_mapping(load_ctx *c, yaml_node_t *map, const char *prefix);
static int apply_sampler(load_ctx *c, yaml_node_t *n, const char *path);

/* Applies one key's value. */
static int apply_key(load_ctx *c, int idx, yaml_node_t *n, const char *path) {
    const dc_key *k = &keys[idx];
    const int canon = canon_of(idx);
    union {
        int i;
        int64_t i64;
        uint64_t u64;
        float f;
        double d;
        char s[DC_PATH_MAX];
    } val;
    memset(&val, 0, sizeof val);

    switch (k->kind) {
    case K_BOOL:
    case K_INT:
    case K_I64:
    case K_U64:
    case K_FLOAT:
    case K_DOUBLE:
    case K_STR:
    case K_ENUM:
    case K_NAME:
    case K_SAMPLER_TYPE:
    case K_ALIAS:
        DC_TRY(parse_plain(c, &keys[canon], n, path, &val));
        return assign(c, canon, idx, n, path, &val);

    case K_FLOATS:
    case K_INTS:
        return parse_list(c, idx, n, path);

    case K_DATASET: {
        DC_TRY(parse_string(c, n, path, val.s, k->size));
        for (int i = 0; k->names[i]; i++)
            if (!strcmp(val.s, k->names[i])) return assign(c, idx, idx, n, path, &val);
        for (int i = 0; i < N_REF_DATASETS; i++)
            if (!strcmp(val.s, ref_datasets[i].name)) {
                c->preset = i;
                c->preset_line = node_line(n);
                set_str(val.s, k->size, "list");
                return assign(c, idx, idx, n, path, &val);
            }
        char names[256];
        format_names(k->names, names, sizeof names);
        return fail(c, n, path, "expected one of %s, ImageNet_LT, Places_LT, iNaturalist18, got '%.80s'",
                    names, val.s);
    }

    case K_SAMPLER:
        return apply_sampler(c, n, path);

    case K_COSLR: {
        int b;
        DC_TRY(parse_plain(c, &(dc_key){.kind = K_BOOL}, n, path, &b));
        if (b) {
            val.i = DC_SCHED_COSINE;
            return assign(c, canon, idx, n, path, &val);
        }
        c->coslr_false_line = node_line(n) ? node_line(n) : 1;
        return DC_OK;
    }

    case K_STEP_SIZE: {
        long long v;
        DC_TRY(parse_integer(c, k, n, path, 1, INT_MAX, &v));
        c->step_size = (int)v;
        c->step_size_line = node_line(n) ? node_line(n) : 1;
        return DC_OK;
    }

    case K_NROOT: {
        if (n->type == YAML_SCALAR_NODE && is_null(n)) {
            val.d = 0.0; /* the reference's nroot null: weights min(n)/n_c, i.e. class-balanced */
        } else {
            double nroot;
            DC_TRY(
                parse_real(c, &(dc_key){.kind = K_DOUBLE, .min = 1, .flags = HAS_MIN}, n, path, 0, &nroot));
            val.d = 1.0 / nroot;
        }
        return assign(c, canon, idx, n, path, &val);
    }

    case K_ARCH_FILE: {
        char stem[DC_NAME_MAX];
        DC_TRY(parse_string(c, n, path, val.s, DC_PATH_MAX));
        def_file_stem(val.s, stem, sizeof stem);
        for (int i = 0; arch_names[i]; i++)
            if (!strcmp(stem, arch_names[i]) || (arch_ref_file[i] && !strcmp(stem, arch_ref_file[i]))) {
                set_str(val.s, keys[canon].size, arch_names[i]);
                return assign(c, canon, idx, n, path, &val);
            }
        return fail(
            c, n, path,
            "unknown backbone '%.200s' (decouple has ResNet10Feature, ResNet50Feature, ResNet101Feature, "
            "ResNet152Feature, ResNext50Feature, and the arch names of networks.feat_model.arch)",
            val.s);
    }

    case K_HEAD_FILE: {
        char stem[DC_NAME_MAX];
        DC_TRY(parse_string(c, n, path, val.s, DC_PATH_MAX));
        def_file_stem(val.s, stem, sizeof stem);
        int head;
        if (!strcmp(stem, "DotProductClassifier"))
            head = DC_HEAD_LINEAR;
        else if (!strcmp(stem, "TauNormClassifier"))
            head = DC_HEAD_LWS;
        else if (!strcmp(stem, "KNNClassifier"))
            return fail(c, n, path,
                        "the NCM head is post-hoc (fitted after training), not a trained classifier");
        else
            return fail(
                c, n, path,
                "unknown classifier '%.200s' (decouple trains DotProductClassifier and TauNormClassifier)",
                val.s);
        memset(&val, 0, sizeof val);
        val.i = head;
        return assign(c, canon, idx, n, path, &val);
    }

    case K_LOSS_FILE: {
        char stem[DC_NAME_MAX];
        DC_TRY(parse_string(c, n, path, val.s, DC_PATH_MAX));
        def_file_stem(val.s, stem, sizeof stem);
        float tau;
        if (!strcmp(stem, "SoftmaxLoss"))
            tau = 0.0f;
        else if (!strcmp(stem, "BalancedSoftmaxLoss"))
            tau = 1.0f;
        else
            return fail(c, n, path,
                        "unknown loss '%.200s' (decouple has SoftmaxLoss and BalancedSoftmaxLoss)", val.s);
        memset(&val, 0, sizeof val);
        val.f = tau;
        return assign(c, canon, idx, n, path, &val);
    }

    case K_IGNORE:
        return DC_OK;
    case K_REQUIRE:
        return check_require(c, k, n, path);
    case K_UNSUPPORTED:
        return fail(c, n, path, "%s", k->doc);
    }
    return fail(c, n, path, "internal error: unhandled key kind");
}

/* ---- unknown keys: "did you mean" ---- */

static int edit_distance(const char *a, const char *b) {
    int la = (int)strlen(a), lb = (int)strlen(b);
    if (la > KEY_PATH_MAX || lb > KEY_PATH_MAX) return INT_MAX / 2;
    int prev[KEY_PATH_MAX + 1], cur[KEY_PATH_MAX + 1];
    for (int j = 0; j <= lb; j++) prev[j] = j;
    for (int i = 1; i <= la; i++) {
        cur[0] = i;
        for (int j = 1; j <= lb; j++) {
            int sub = prev[j - 1] + (a[i - 1] != b[j - 1]);
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = sub < del ? (sub < ins ? sub : ins) : (del < ins ? del : ins);
        }
        memcpy(prev, cur, sizeof(int) * (size_t)(lb + 1));
    }
    return prev[lb];
}

static const char *leaf_of(const char *path) {
    const char *dot = strrchr(path, '.');
    return dot ? dot + 1 : path;
}

/* The closest known key or section to an unknown path. A key elsewhere with the same last component (a key
 * put in the wrong section) wins, the nearest of them by edit distance; otherwise the nearest key or section
 * within a small edit distance. */
static int suggest(const char *path, char *out, size_t n) {
    const char *leaf = leaf_of(path);
    int best = INT_MAX, best_same_leaf = INT_MAX;
    const int threshold = 1 + (int)strlen(leaf) / 4 < 3 ? 1 + (int)strlen(leaf) / 4 : 3;
    for (int i = 0; i < N_KEYS; i++) {
        if (!strcmp(keys[i].path, path)) continue;
        if (!strcmp(leaf_of(keys[i].path), leaf)) {
            int d = edit_distance(path, keys[i].path);
            if (d < best_same_leaf) {
                best_same_leaf = d;
                snprintf(out, n, "%s", keys[i].path);
            }
        }
    }
    if (best_same_leaf != INT_MAX) return 1;
    for (int i = 0; i < N_KEYS; i++) {
        /* the key itself and every section above it */
        char cand[KEY_PATH_MAX];
        snprintf(cand, sizeof cand, "%s", keys[i].path);
        for (;;) {
            int d = edit_distance(path, cand);
            if (d < best && d <= threshold) {
                best = d;
                snprintf(out, n, "%s", cand);
            }
            char *dot = strrchr(cand, '.');
            if (!dot) break;
            *dot = '\0';
        }
    }
    return best != INT_MAX;
}

static int fail_unknown(load_ctx *c, const yaml_node_t *key_node, const char *path) {
    char hint[KEY_PATH_MAX];
    if (suggest(path, hint, sizeof hint))
        return fail(c, key_node, path, "unknown key '%s', did you mean '%s'?", path, hint);
    return fail(c, key_node, path, "unknown key '%s' (docs/CONFIG.md lists every key)", path);
}

/* Checks a mapping's key nodes: plain scalars, no duplicates. Fills *key with the i-th key's text. */
static int mapping_key(load_ctx *c, yaml_node_t *map, int i, const char *prefix, const char **key,
                       yaml_node_t **key_node, yaml_node_t **value) {
    yaml_node_pair_t *pairs = map->data.mapping.pairs.start;
    yaml_node_t *kn = yaml_document_get_node(c->doc, pairs[i].key);
    *value = yaml_document_get_node(c->doc, pairs[i].value);
    *key_node = kn;
    if (!kn || kn->type != YAML_SCALAR_NODE || strlen(scalar(kn)) != kn->data.scalar.length) {
        char got[128];
        if (kn) describe_got(kn, got, sizeof got);
        return fail(c, kn ? kn : map, prefix, "expected key names, got %s as a key", kn ? got : "nothing");
    }
    *key = scalar(kn);
    if (strchr(*key, '.'))
        return fail(c, kn, prefix,
                    "key '%.120s' contains a '.'; nest sections instead (dotted paths are for --set)", *key);
    for (int j = 0; j < i; j++) {
        yaml_node_t *other = yaml_document_get_node(c->doc, pairs[j].key);
        if (other && other->type == YAML_SCALAR_NODE && !strcmp(scalar(other), *key)) {
            char path[KEY_PATH_MAX];
            snprintf(path, sizeof path, "%s%s%.120s", prefix, prefix[0] ? "." : "", *key);
            if (c->lines)
                return fail(c, kn, path, "duplicate key (first given at line %d)", node_line(other));
            return fail(c, kn, path, "duplicate key");
        }
    }
    return DC_OK;
}

static int mapping_size(const yaml_node_t *map) {
    return (int)(map->data.mapping.pairs.top - map->data.mapping.pairs.start);
}

static int walk_mapping(load_ctx *c, yaml_node_t *map, const char *prefix) {
    for (int i = 0; i < mapping_size(map); i++) {
        const char *key;
        yaml_node_t *kn, *value;
        DC_TRY(mapping_key(c, map, i, prefix, &key, &kn, &value));
        char path[KEY_PATH_MAX];
        snprintf(path, sizeof path, "%s%s%.120s", prefix, prefix[0] ? "." : "", key);
        int idx = find_key(path, 0);
        if (idx >= 0) {
            DC_TRY(apply_key(c, idx, value, path));
        } else if (is_section(path)) {
            if (value->type == YAML_MAPPING_NODE) {
                DC_TRY(walk_mapping(c, value, path));
            } else if (!(value->type == YAML_SCALAR_NODE && is_null(value))) {
                char got[128];
                describe_got(value, got, sizeof got);
                return fail(c, value, path, "expected a mapping of keys (a section), got %s", got);
            }
        } else {
            return fail_unknown(c, kn, path);
        }
    }
    return DC_OK;
}

/* training_opt.sampler: null, or a mapping whose `type` decides which keys it may hold. */
static int apply_sampler(load_ctx *c, yaml_node_t *n, const char *path) {
    static const struct {
        const char *name;
        dc_sampler_type type;
        unsigned group;
        double implied_q; /* < 0: none */
    } types[] = {
        {"instance_balanced", DC_SAMPLER_INSTANCE, G_NATIVE, -1},
        {"class_aware", DC_SAMPLER_CLASS_AWARE, G_NATIVE, -1},
        {"class_balanced", DC_SAMPLER_CLASS_AWARE, G_NATIVE, -1},
        {"power", DC_SAMPLER_POWER, G_NATIVE, -1},
        {"square_root", DC_SAMPLER_POWER, G_NATIVE, 0.5},
        {"progressive", DC_SAMPLER_PROGRESSIVE, G_NATIVE, -1},
        {"ClassAwareSampler", DC_SAMPLER_CLASS_AWARE, G_CAS, -1},
        {"MixedPrioritizedSampler", DC_SAMPLER_POWER, G_MPS, -1},
        {"ClassPrioritySampler", DC_SAMPLER_PROGRESSIVE, G_CPS, -1},
    };
    const int n_types = (int)(sizeof types / sizeof types[0]);
    const int type_idx = find_key("training_opt.sampler.type", G_ALL);
    const int q_idx = find_key("training_opt.sampler.q", G_NATIVE);
    int val = DC_SAMPLER_INSTANCE;

    if (n->type == YAML_SCALAR_NODE && is_null(n)) return assign(c, type_idx, type_idx, n, path, &val);
    if (n->type != YAML_MAPPING_NODE) {
        char got[128];
        describe_got(n, got, sizeof got);
        return fail(c, n, path, "expected null (instance-balanced) or a mapping with a type, got %s", got);
    }

    /* the type first: it decides the other keys */
    unsigned group = G_NATIVE;
    const char *type_name = "(unchanged)";
    for (int i = 0; i < mapping_size(n); i++) {
        const char *key;
        yaml_node_t *kn, *value;
        DC_TRY(mapping_key(c, n, i, path, &key, &kn, &value));
        if (strcmp(key, "type") != 0) continue;
        char tpath[KEY_PATH_MAX];
        snprintf(tpath, sizeof tpath, "%s.type", path);
        int t = -1;
        if (value->type == YAML_SCALAR_NODE)
            for (int j = 0; j < n_types; j++)
                if (!strcmp(scalar(value), types[j].name)) t = j;
        if (t < 0) {
            char got[128];
            describe_got(value, got, sizeof got);
            return fail(
                c, value, tpath,
                "expected one of instance_balanced, class_aware, class_balanced, power, square_root, "
                "progressive, ClassAwareSampler, MixedPrioritizedSampler, ClassPrioritySampler; got %s",
                got);
        }
        val = (int)types[t].type;
        DC_TRY(assign(c, type_idx, type_idx, value, tpath, &val));
        if (types[t].implied_q >= 0) {
            double q = types[t].implied_q;
            DC_TRY(assign(c, q_idx, type_idx, value, tpath, &q));
        }
        group = types[t].group;
        type_name = types[t].name;
    }

    int has_nroot = 0;
    for (int i = 0; i < mapping_size(n); i++) {
        const char *key;
        yaml_node_t *kn, *value;
        DC_TRY(mapping_key(c, n, i, path, &key, &kn, &value));
        if (!strcmp(key, "type")) continue;
        char kpath[KEY_PATH_MAX];
        snprintf(kpath, sizeof kpath, "%s.%.120s", path, key);
        int idx = find_key(kpath, group);
        if (idx < 0) {
            if (find_key(kpath, G_ALL) >= 0)
                return fail(c, kn, kpath,
                            "not a key of sampler type %s (docs/CONFIG.md lists each type's keys)",
                            type_name);
            return fail_unknown(c, kn, kpath);
        }
        if (!strcmp(key, "nroot")) has_nroot = 1;
        DC_TRY(apply_key(c, idx, value, kpath));
    }
    if (group == G_MPS && !has_nroot)
        return fail(c, n, path, "MixedPrioritizedSampler needs nroot (2.0: square-root sampling)");
    return DC_OK;
}

/* Document-level rules, once every key has been read. */
static int finalize(load_ctx *c, int from_file) {
    dc_config *cfg = c->cfg;
    dc_training_opt *t = &cfg->training_opt;

    /* the reference's dataset names: the dataset's list files and transforms, for every key not given */
    if (from_file && c->preset >= 0) {
        const ref_dataset *p = &ref_datasets[c->preset];
#define UNSET(path) (c->seen_line[key_index(path)] == 0)
        char list[DC_PATH_MAX];
        static const char *const splits[] = {"train", "val", "test"};
        char *const dst[] = {t->train_list, t->val_list, t->test_list};
        static const char *const list_keys[] = {"training_opt.train_list", "training_opt.val_list",
                                                "training_opt.test_list"};
        for (int s = 0; s < 3; s++) {
            if (!UNSET(list_keys[s])) continue;
            if (s == 2 && !p->has_test)
                list[0] = '\0';
            else
                snprintf(list, sizeof list, "data/%s/%s_%s.txt", p->name, p->name, splits[s]);
            set_str(dst[s], DC_PATH_MAX, list);
        }
        if (UNSET("training_opt.data_root")) set_str(t->data_root, sizeof t->data_root, "");
        if (UNSET("training_opt.num_classes")) t->num_classes = p->num_classes;
        if (UNSET("training_opt.in_channels")) t->in_channels = 3;
        if (UNSET("training_opt.image_size")) t->image_size = 224;
        if (UNSET("training_opt.resize_size")) t->resize_size = 256;
        if (UNSET("training_opt.augment")) t->augment = DC_AUG_IMAGENET;
        if (UNSET("training_opt.hflip")) t->hflip = 1;
        if (UNSET("training_opt.color_jitter")) t->color_jitter = p->color_jitter;
        if (UNSET("training_opt.mean")) {
            memset(t->mean, 0, sizeof t->mean);
            memcpy(t->mean, p->mean, sizeof p->mean);
        }
        if (UNSET("training_opt.std")) {
            memset(t->std, 0, sizeof t->std);
            memcpy(t->std, p->std, sizeof p->std);
        }
#undef UNSET
    }

    /* coslr: false -> multistep with scheduler_params.step_size, else constant */
    const int type_idx = key_index("scheduler.type");
    if (c->coslr_false_line) {
        if (c->seen_line[type_idx] && cfg->scheduler.type == DC_SCHED_COSINE) {
            if (c->lines)
                return DC_ERR("%s:%d: coslr: false conflicts with '%s' at line %d", c->name,
                              c->coslr_false_line, keys[c->seen_by[type_idx]].path, c->seen_line[type_idx]);
            return DC_ERR("%s: coslr: false conflicts with '%s'", c->name, keys[c->seen_by[type_idx]].path);
        }
        if (!c->seen_line[type_idx])
            cfg->scheduler.type = c->step_size ? DC_SCHED_MULTISTEP : DC_SCHED_CONSTANT;
    }
    /* StepLR(step_size): milestones every step_size epochs */
    const int ms_idx = key_index("scheduler.milestones");
    if (c->step_size && cfg->scheduler.type == DC_SCHED_MULTISTEP && !c->seen_line[ms_idx]) {
        int count = 0;
        for (long e = c->step_size; e < t->num_epochs; e += c->step_size) {
            if (count == DC_MAX_MILESTONES) {
                if (c->lines)
                    return DC_ERR(
                        "%s:%d: training_opt.scheduler_params.step_size: %d gives more than %d milestones "
                        "over %d epochs",
                        c->name, c->step_size_line, c->step_size, DC_MAX_MILESTONES, t->num_epochs);
                return DC_ERR(
                    "%s: training_opt.scheduler_params.step_size: %d gives more than %d milestones over "
                    "%d epochs",
                    c->name, c->step_size, DC_MAX_MILESTONES, t->num_epochs);
            }
            cfg->scheduler.milestones[count++] = (int)e;
        }
        for (int i = count; i < DC_MAX_MILESTONES; i++) cfg->scheduler.milestones[i] = 0;
        cfg->scheduler.num_milestones = count;
    }

    /* a file's mean and std lists must match its in_channels */
    if (from_file) {
        if (c->mean_count && c->mean_count != t->in_channels)
            return DC_ERR("%s:%d: training_opt.mean: has %d values but in_channels is %d", c->name,
                          c->mean_line, c->mean_count, t->in_channels);
        if (c->std_count && c->std_count != t->in_channels)
            return DC_ERR("%s:%d: training_opt.std: has %d values but in_channels is %d", c->name,
                          c->std_line, c->std_count, t->in_channels);
    }
    return DC_OK;
}

/* Turns a libyaml error into "name:line:col: YAML syntax error: ..." */
static int yaml_error(const char *name, const yaml_parser_t *p, const char *text, size_t len) {
    if (p->error == YAML_MEMORY_ERROR) return DC_ERR("%s: out of memory while parsing", name);
    if (p->error == YAML_READER_ERROR) {
        int line = 1;
        for (size_t i = 0; i < p->problem_offset && i < len; i++) line += text[i] == '\n';
        if (p->problem_value != -1)
            return DC_ERR("%s:%d: invalid text: %s (byte 0x%02x at offset %zu)", name, line,
                          p->problem ? p->problem : "?", (unsigned)p->problem_value & 0xffu,
                          p->problem_offset);
        return DC_ERR("%s:%d: invalid text: %s (offset %zu)", name, line, p->problem ? p->problem : "?",
                      p->problem_offset);
    }
    const int line = (int)p->problem_mark.line + 1, col = (int)p->problem_mark.column + 1;
    if (p->context)
        return DC_ERR("%s:%d:%d: YAML syntax error: %s (%s at line %d)", name, line, col,
                      p->problem ? p->problem : "?", p->context, (int)p->context_mark.line + 1);
    return DC_ERR("%s:%d:%d: YAML syntax error: %s", name, line, col, p->problem ? p->problem : "?");
}

/* Parses `text` and applies it to *cfg (only when everything is valid). */
static int apply_text(dc_config *cfg, const char *name, int from_file, const char *text, size_t len) {
    yaml_parser_t parser;
    yaml_document_t doc;
    if (!yaml_parser_initialize(&parser)) return DC_ERR("%s: out of memory initialising libyaml", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        int rc = yaml_error(name, &parser, text, len);
        yaml_parser_delete(&parser);
        return rc;
    }

    int rc = DC_OK;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root && root->type == YAML_SCALAR_NODE && is_null(root)) root = NULL; /* "---" alone: empty */
    {
        /* a second document is refused: one file, one config (libyaml returns an empty one at the end) */
        yaml_document_t next;
        if (!yaml_parser_load(&parser, &next)) {
            rc = yaml_error(name, &parser, text, len);
        } else {
            yaml_node_t *r2 = yaml_document_get_root_node(&next);
            if (r2 && !(r2->type == YAML_SCALAR_NODE && is_null(r2)))
                rc = DC_ERR("%s:%d: a second YAML document; a config file holds one", name, node_line(r2));
            yaml_document_delete(&next);
        }
    }

    dc_config *work = NULL;
    load_ctx *c = NULL;
    if (rc == DC_OK && root) {
        work = dc_malloc(sizeof *work);
        c = dc_calloc(1, sizeof *c);
        if (!work || !c) rc = DC_FAIL;
    }
    if (rc == DC_OK && root) {
        memcpy(work, cfg, sizeof *work);
        c->name = name;
        c->lines = from_file;
        c->doc = &doc;
        c->cfg = work;
        c->preset = -1;
        if (root->type != YAML_MAPPING_NODE) {
            char got[128];
            describe_got(root, got, sizeof got);
            rc = fail(c, root, NULL, "expected a mapping of keys at the top level, got %s", got);
        }
        if (rc == DC_OK) rc = walk_mapping(c, root, "");
        if (rc == DC_OK) rc = finalize(c, from_file);
        if (rc == DC_OK) memcpy(cfg, work, sizeof *cfg);
    }
    free(work);
    free(c);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int dc_config_load(dc_config *cfg, const char *path) {
    if (!cfg || !path) return DC_ERR("dc_config_load: NULL argument");
    FILE *f = fopen(path, "rb");
    if (!f) return DC_ERR("%s: cannot open: %s", path, strerror(errno));
    char *text = dc_malloc(CONFIG_MAX_FILE_BYTES + 1);
    if (!text) {
        fclose(f);
        return DC_FAIL;
    }
    size_t len = fread(text, 1, CONFIG_MAX_FILE_BYTES + 1, f);
    int read_errno = errno;
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(text);
        return DC_ERR("%s: cannot read: %s", path, strerror(read_errno));
    }
    if (len > CONFIG_MAX_FILE_BYTES) {
        free(text);
        return DC_ERR("%s: larger than %u bytes; not a config file", path, CONFIG_MAX_FILE_BYTES);
    }
    text[len] = '\0';
    int rc = apply_text(cfg, path, 1, text, len);
    free(text);
    if (rc == DC_OK) set_str(cfg->source_path, sizeof cfg->source_path, path);
    return rc;
}

int dc_config_load_buffer(dc_config *cfg, const char *text, size_t len, const char *what) {
    if (!cfg || (!text && len)) return DC_ERR("dc_config_load_buffer: NULL argument");
    if (!what) what = "<memory>";
    if (len > CONFIG_MAX_FILE_BYTES)
        return DC_ERR("%s: larger than %u bytes; not a config file", what, CONFIG_MAX_FILE_BYTES);
    int rc = apply_text(cfg, what, 1, text ? text : "", len);
    if (rc == DC_OK) set_str(cfg->source_path, sizeof cfg->source_path, what);
    return rc;
}

int dc_config_set(dc_config *cfg, const char *assignment) {
    if (!cfg || !assignment) return DC_ERR("dc_config_set: NULL argument");
    const char *eq = strchr(assignment, '=');
    if (!eq || eq == assignment)
        return DC_ERR("--set '%.200s': expected key.path=value, e.g. training_opt.batch_size=256",
                      assignment);
    const size_t klen = (size_t)(eq - assignment);
    if (klen >= KEY_PATH_MAX) return DC_ERR("--set: key path too long");
    char path[KEY_PATH_MAX];
    memcpy(path, assignment, klen);
    path[klen] = '\0';
    const char *value = eq + 1;
    if (strchr(value, '\n') || strchr(value, '\r'))
        return DC_ERR("--set: %s: the value holds a line break", path);
    /* key components are identifiers; then {a: {b: {c: value}}} written as indented block YAML */
    const char *err_comp = NULL;
    for (const char *p = path; *p; p++)
        if (!(*p == '_' || *p == '.' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
              (*p >= '0' && *p <= '9')))
            err_comp = p;
    if (err_comp || path[0] == '.' || path[klen - 1] == '.' || strstr(path, ".."))
        return DC_ERR("--set: '%s' is not a key path (names joined by dots)", path);
    size_t cap = klen * 4 + strlen(value) + 64 + 2 * KEY_PATH_MAX;
    char *text = dc_malloc(cap);
    if (!text) return DC_FAIL;
    size_t o = 0;
    int depth = 0;
    const char *start = path;
    for (const char *p = path;; p++) {
        if (*p == '.' || *p == '\0') {
            o += (size_t)snprintf(text + o, cap - o, "%*s%.*s:", 2 * depth, "", (int)(p - start), start);
            if (*p == '\0') break;
            o += (size_t)snprintf(text + o, cap - o, "\n");
            depth++;
            start = p + 1;
        }
    }
    o += (size_t)snprintf(text + o, cap - o, " %s\n", value);
    int rc = apply_text(cfg, "--set", 0, text, o);
    free(text);
    return rc;
}

/* ---- validation ---------------------------------------------------------------------------------------- */

static int arch_index(const char *arch) {
    for (int i = 0; arch_names[i]; i++)
        if (!strcmp(arch, arch_names[i])) return i;
    return -1;
}

int dc_config_validate(const dc_config *cfg) {
    if (!cfg) return DC_ERR("dc_config_validate: NULL config");
    const char *src = cfg->source_path[0] ? cfg->source_path : "config";
    const dc_training_opt *t = &cfg->training_opt;
    char buf[256], expect[600];

    /* the per-key rules, again: the struct may have been edited by code */
    for (int i = 0; i < N_KEYS; i++) {
        const dc_key *k = &keys[i];
        if (k->flags & REF) continue;
        const char *p = (const char *)cfg + k->off;
        double v = 0;
        int checked = 1;
        switch (k->kind) {
        case K_BOOL:
            if (*(const int *)p != 0 && *(const int *)p != 1)
                return DC_ERR("%s: %s: expected 0 or 1, holds %d", src, k->path, *(const int *)p);
            checked = 0;
            break;
        case K_INT:
            v = *(const int *)p;
            break;
        case K_I64:
            v = (double)*(const int64_t *)p;
            break;
        case K_FLOAT:
            v = *(const float *)p;
            break;
        case K_DOUBLE:
            v = *(const double *)p;
            break;
        case K_ENUM:
        case K_SAMPLER_TYPE: {
            int e = *(const int *)p, count = 0;
            while (k->names[count]) count++;
            if (e < 0 || e >= count) {
                format_expect(k, expect, sizeof expect);
                return DC_ERR("%s: %s: expected %s, holds %d", src, k->path, expect, e);
            }
            checked = 0;
            break;
        }
        case K_STR:
        case K_NAME:
        case K_DATASET:
            if (!memchr(p, '\0', k->size)) return DC_ERR("%s: %s: not NUL-terminated", src, k->path);
            if (k->kind != K_STR) {
                int found = 0;
                for (int j = 0; k->names[j]; j++) found |= !strcmp(p, k->names[j]);
                if (!found) {
                    format_names(k->names, expect, sizeof expect);
                    return DC_ERR("%s: %s: expected one of %s, holds '%.80s'", src, k->path, expect, p);
                }
            }
            checked = 0;
            break;
        case K_FLOATS: {
            const float *a = (const float *)p;
            for (int c = 0; c < t->in_channels && c < (int)k->size; c++) {
                if (!strcmp(k->path, "training_opt.std") && a[c] == 0.0f)
                    return DC_ERR("%s: %s: has fewer values than in_channels (%d)", src, k->path,
                                  t->in_channels);
                if (!isfinite(a[c]) || !in_range(k, a[c])) {
                    format_expect(k, expect, sizeof expect);
                    return DC_ERR("%s: %s[%d]: expected %s, holds %g", src, k->path, c, expect, (double)a[c]);
                }
            }
            for (int c = t->in_channels; c < (int)k->size; c++)
                if (c >= 0 && a[c] != 0.0f)
                    return DC_ERR("%s: %s: has more values than in_channels (%d)", src, k->path,
                                  t->in_channels);
            checked = 0;
            break;
        }
        case K_INTS: {
            const int *a = (const int *)p;
            int count = *(const int *)((const char *)cfg + k->count_off);
            if (count < 0 || count > (int)k->size)
                return DC_ERR("%s: %s: holds %d values, at most %d", src, k->path, count, (int)k->size);
            for (int j = 0; j < count; j++) {
                if (!in_range(k, a[j]))
                    return DC_ERR("%s: %s[%d]: expected an integer >= %g, holds %d", src, k->path, j, k->min,
                                  a[j]);
                if (j > 0 && a[j] <= a[j - 1])
                    return DC_ERR("%s: %s: must be strictly increasing (%d after %d)", src, k->path, a[j],
                                  a[j - 1]);
            }
            checked = 0;
            break;
        }
        default:
            checked = 0;
            break;
        }
        if (checked && (!isfinite(v) || !in_range(k, v))) {
            format_expect(k, expect, sizeof expect);
            format_value(k, cfg, buf, sizeof buf);
            return DC_ERR("%s: %s: expected %s, holds %s", src, k->path, expect, buf);
        }
    }

    /* cross-field rules */
    const int a = arch_index(cfg->feat_model.arch);
    if (cfg->classifier.feat_dim != 0 && cfg->classifier.feat_dim != arch_feat_dim[a])
        return DC_ERR("%s: networks.classifier.params.feat_dim: %d, but %s has %d-d features", src,
                      cfg->classifier.feat_dim, cfg->feat_model.arch, arch_feat_dim[a]);
    static const struct {
        const char *name;
        int channels, classes;
    } known[] = {{"fashion_mnist", 1, 10}, {"mnist", 1, 10}, {"cifar10", 3, 10}, {"cifar100", 3, 100}};
    for (int i = 0; i < 4; i++) {
        if (strcmp(t->dataset, known[i].name) != 0) continue;
        if (t->in_channels != known[i].channels)
            return DC_ERR("%s: training_opt.in_channels: %s images have %d channel(s), in_channels is %d",
                          src, t->dataset, known[i].channels, t->in_channels);
        if (t->num_classes != known[i].classes)
            return DC_ERR("%s: training_opt.num_classes: %s has %d classes, num_classes is %d", src,
                          t->dataset, known[i].classes, t->num_classes);
    }
    if (!strcmp(t->dataset, "list") && !t->train_list[0])
        return DC_ERR("%s: training_opt.train_list: dataset list needs a training list file", src);
    if (t->resize_size != 0 && t->resize_size < t->image_size)
        return DC_ERR("%s: training_opt.resize_size: %d is smaller than image_size %d", src, t->resize_size,
                      t->image_size);
    if (cfg->scheduler.warmup_epochs > t->num_epochs)
        return DC_ERR("%s: scheduler.warmup_epochs: %g is longer than num_epochs %d", src,
                      cfg->scheduler.warmup_epochs, t->num_epochs);
    if (cfg->scheduler.type == DC_SCHED_MULTISTEP && cfg->scheduler.num_milestones > 0 &&
        cfg->scheduler.milestones[cfg->scheduler.num_milestones - 1] >= t->num_epochs)
        return DC_ERR("%s: scheduler.milestones: %d is not below num_epochs %d", src,
                      cfg->scheduler.milestones[cfg->scheduler.num_milestones - 1], t->num_epochs);
    return DC_OK;
}

/* ---- writing and hashing ------------------------------------------------------------------------------- */

static int writable(const dc_key *k) {
    if (k->flags & REF) return 0;
    if (k->groups && !(k->groups & G_NATIVE)) return 0;
    switch (k->kind) {
    case K_BOOL:
    case K_INT:
    case K_I64:
    case K_U64:
    case K_FLOAT:
    case K_DOUBLE:
    case K_STR:
    case K_ENUM:
    case K_NAME:
    case K_DATASET:
    case K_FLOATS:
    case K_INTS:
    case K_SAMPLER_TYPE:
        return 1;
    default:
        return 0;
    }
}

/* Block YAML of every native key in table order; a key path a.b.c opens the sections a: and b: as needed. */
static void emit_yaml(FILE *f, const dc_config *cfg, int for_hash) {
    char open[8][64]; /* components of the sections currently open */
    int n_open = 0;
    char value[2 * DC_PATH_MAX + 16];
    if (!for_hash)
        fprintf(f, "# decouple configuration: the effective value of every key (docs/CONFIG.md).\n"
                   "# Load it again with --config; it reproduces the run's settings exactly.\n");
    for (int i = 0; i < N_KEYS; i++) {
        const dc_key *k = &keys[i];
        if (!writable(k) || (for_hash && (k->flags & NOHASH))) continue;
        char comp[8][64];
        int n = 0;
        const char *s = k->path;
        while (n < 8) {
            const char *dot = strchr(s, '.');
            size_t len = dot ? (size_t)(dot - s) : strlen(s);
            snprintf(comp[n++], sizeof comp[0], "%.*s", (int)len, s);
            if (!dot) break;
            s = dot + 1;
        }
        int common = 0;
        while (common < n_open && common < n - 1 && !strcmp(open[common], comp[common])) common++;
        n_open = common;
        for (int d = common; d < n - 1; d++) {
            fprintf(f, "%*s%s:\n", 2 * d, "", comp[d]);
            snprintf(open[n_open++], sizeof open[0], "%s", comp[d]);
        }
        format_value(k, cfg, value, sizeof value);
        fprintf(f, "%*s%s: %s\n", 2 * (n - 1), "", comp[n - 1], value);
    }
}

int dc_config_write(const dc_config *cfg, const char *path) {
    if (!cfg || !path) return DC_ERR("dc_config_write: NULL argument");
    /* atomically: a full disk or a crash never leaves a truncated config.yaml in place of a good one */
    dc_atomic_file h;
    FILE *f = dc_atomic_open(path, &h);
    if (!f) return DC_FAIL;
    emit_yaml(f, cfg, 0);
    return dc_atomic_commit(&h);
}

uint64_t dc_config_hash(const dc_config *cfg) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    uint64_t h = 1469598103934665603ull; /* FNV-1a 64: h = (h ^ byte) * 1099511628211 */
    if (!f) return 0;
    emit_yaml(f, cfg, 1);
    fclose(f);
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)text[i];
        h *= 1099511628211ull;
    }
    free(text);
    return h;
}

/* ---- documentation ------------------------------------------------------------------------------------- */

static const char *section_of(const char *path, char *buf, size_t n) {
    if (!strncmp(path, "training_opt.sampler.", 21)) return "training_opt.sampler";
    if (!strncmp(path, "networks.", 9)) {
        const char *dot = strchr(path + 9, '.');
        snprintf(buf, n, "%.*s", dot ? (int)(dot - path) : (int)strlen(path), path);
        return buf;
    }
    const char *dot = strchr(path, '.');
    if (!dot) return "";
    snprintf(buf, n, "%.*s", (int)(dot - path), path);
    return buf;
}

/* Markdown table cell: '|' escaped. */
static void put_cell(FILE *f, const char *s) {
    for (; *s; s++) {
        if (*s == '|') fputc('\\', f);
        fputc(*s, f);
    }
}

static void type_text(const dc_key *k, char *buf, size_t n) {
    char range[96], names[512];
    format_range(k, range, sizeof range);
    switch (k->kind) {
    case K_BOOL:
        snprintf(buf, n, "bool");
        break;
    case K_INT:
    case K_I64:
        snprintf(buf, n, "int%s", range);
        break;
    case K_U64:
        snprintf(buf, n, "unsigned 64-bit int");
        break;
    case K_FLOAT:
    case K_DOUBLE:
        snprintf(buf, n, "number%s", range);
        break;
    case K_STR:
        snprintf(buf, n, "string");
        break;
    case K_DATASET:
        snprintf(buf, n, "dataset name");
        break;
    case K_ENUM:
    case K_NAME:
    case K_SAMPLER_TYPE:
        format_names(k->names, names, sizeof names);
        snprintf(buf, n, "one of: %s", names);
        break;
    case K_FLOATS:
        snprintf(buf, n, "list of in_channels numbers%s", range);
        break;
    case K_INTS:
        snprintf(buf, n, "list of at most %d ints%s", (int)k->size, range);
        break;
    case K_SAMPLER:
        snprintf(buf, n, "null or mapping");
        break;
    case K_COSLR:
        snprintf(buf, n, "bool");
        break;
    case K_STEP_SIZE:
        snprintf(buf, n, "int >= 1");
        break;
    case K_NROOT:
        snprintf(buf, n, "number >= 1, or null");
        break;
    case K_ARCH_FILE:
    case K_HEAD_FILE:
    case K_LOSS_FILE:
        snprintf(buf, n, "def_file path");
        break;
    case K_IGNORE:
        snprintf(buf, n, "anything");
        break;
    case K_ALIAS: {
        int c = key_index(k->canon);
        if (c >= 0) type_text(&keys[c], buf, n);
        break;
    }
    case K_REQUIRE: {
        static const char *const want[] = {"false (or null)", "true", "null", "null or 0",
                                           "null or 1.0",     "0",    "1.0"};
        snprintf(buf, n, "must be %s", want[k->req]);
        break;
    }
    case K_UNSUPPORTED:
        snprintf(buf, n, "refused");
        break;
    }
}

static const char *group_names(unsigned g) {
    switch (g & (G_CAS | G_MPS | G_CPS)) {
    case G_CAS:
        return "ClassAwareSampler";
    case G_MPS:
        return "MixedPrioritizedSampler";
    case G_CPS:
        return "ClassPrioritySampler";
    case G_MPS | G_CPS:
        return "MixedPrioritizedSampler, ClassPrioritySampler";
    case G_CAS | G_MPS | G_CPS:
        return "every reference type";
    default:
        return "";
    }
}

int dc_config_describe(FILE *out) {
    if (!out) return DC_ERR("dc_config_describe: NULL stream");
    static const char *const sections[] = {"",
                                           "scheduler",
                                           "optimizer",
                                           "training_opt",
                                           "training_opt.sampler",
                                           "networks.feat_model",
                                           "networks.classifier",
                                           "stage2",
                                           "stage2.crt_train",
                                           "stage2.lws_train",
                                           "memory",
                                           "criterions"};
    dc_config def;
    dc_config_defaults(&def);
    char sec[KEY_PATH_MAX], type[640], value[2 * DC_PATH_MAX + 16];
    for (size_t s = 0; s < sizeof sections / sizeof sections[0]; s++) {
        int n_native = 0, n_ref = 0;
        for (int i = 0; i < N_KEYS; i++) {
            if (strcmp(section_of(keys[i].path, sec, sizeof sec), sections[s]) != 0) continue;
            if (keys[i].flags & REF)
                n_ref++;
            else
                n_native++;
        }
        if (sections[s][0])
            fprintf(out, "### `%s`\n\n", sections[s]);
        else
            fprintf(out, "### Top level\n\n");
        if (n_native) {
            fprintf(out, "| key | type | default | meaning |\n|---|---|---|---|\n");
            for (int i = 0; i < N_KEYS; i++) {
                const dc_key *k = &keys[i];
                if ((k->flags & REF) || strcmp(section_of(k->path, sec, sizeof sec), sections[s]) != 0)
                    continue;
                type_text(k, type, sizeof type);
                if (writable(k))
                    format_value(k, &def, value, sizeof value);
                else
                    snprintf(value, sizeof value, "null");
                fprintf(out, "| `%s` | ", k->path);
                put_cell(out, type);
                fprintf(out, " | `");
                put_cell(out, value);
                fprintf(out, "` | ");
                put_cell(out, k->doc);
                fprintf(out, "%s |\n", (k->flags & NOHASH) ? " (not hashed)" : "");
            }
            fprintf(out, "\n");
        }
        if (n_ref) {
            fprintf(out, "Accepted from the reference implementation:\n\n");
            fprintf(out, "| key | accepts | effect |\n|---|---|---|\n");
            for (int i = 0; i < N_KEYS; i++) {
                const dc_key *k = &keys[i];
                if (!(k->flags & REF) || strcmp(section_of(k->path, sec, sizeof sec), sections[s]) != 0)
                    continue;
                type_text(k, type, sizeof type);
                fprintf(out, "| `%s`", k->path);
                if (k->groups) fprintf(out, " (%s)", group_names(k->groups));
                fprintf(out, " | ");
                put_cell(out, type);
                fprintf(out, " | ");
                put_cell(out, k->doc);
                fprintf(out, " |\n");
            }
            fprintf(out, "\n");
        }
    }
    return ferror(out) ? DC_ERR("dc_config_describe: write error") : DC_OK;
}
