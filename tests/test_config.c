/*
 * test_config.c: the YAML configuration loader (core/config.c).
 *
 * Checks, in order:
 *   - the documented defaults, and that they validate;
 *   - reference-implementation configs (tests/fixtures/config_reference_*.yaml) and a native one load with
 * the values the reference's keys mean (def_file strings, coslr, samplers, aliases, dataset presets);
 *   - every error class fails with DC_FAIL and a message naming the file, the right line and the key path,
 *     and a failed load leaves the config untouched;
 *   - dc_config_set overrides, including their errors;
 *   - write -> load gives back the identical struct (memcmp; dc_config_defaults zeroes padding) and the
 *     identical text, for the fixtures, for awkward strings and for random numeric values;
 *   - dc_config_hash: stable, sensitive to hashed keys, blind to the NOHASH ones;
 *   - cross-field validation;
 *   - docs/CONFIG.md lists every key and embeds the current dc_config_describe() output.
 */
#include "core/check.h"
#include "core/config.h"
#include "core/rng.h"
#include "tests/testutil.h"

#include <float.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[256];

/* Writes `text` to tmpdir/name and returns the path (static buffer rotation: 4 live paths). */
static const char *write_tmp(const char *name, const char *text, size_t len) {
    static char paths[4][512];
    static int next = 0;
    char *p = paths[next++ % 4];
    snprintf(p, 512, "%s/%s", tmpdir, name);
    FILE *f = fopen(p, "wb");
    REQUIRE(f != NULL);
    REQUIRE(fwrite(text, 1, len, f) == len);
    fclose(f);
    return p;
}

static const char *tmp_yaml(const char *text) {
    return write_tmp("cfg.yaml", text, strlen(text));
}

static char *read_all(const char *path, size_t *len_out) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    REQUIRE(buf != NULL);
    REQUIRE(fread(buf, 1, (size_t)n, f) == (size_t)n);
    buf[n] = '\0';
    fclose(f);
    if (len_out) *len_out = (size_t)n;
    return buf;
}

/* Loads `text` (as tmpdir/cfg.yaml) over the defaults: expects DC_FAIL and every fragment in the message. */
#define EXPECT_LOAD_FAILS(text, ...)                                                                         \
    do {                                                                                                     \
        const char *frags_[] = {__VA_ARGS__, NULL};                                                          \
        expect_load_fails(__LINE__, text, strlen(text), frags_);                                             \
    } while (0)

static void expect_load_fails(int line, const char *text, size_t len, const char **frags) {
    dc_config cfg, before;
    dc_config_defaults(&cfg);
    dc_config_defaults(&before);
    const char *path = write_tmp("cfg.yaml", text, len);
    dc_clear_error();
    int rc = dc_config_load(&cfg, path);
    tu_checks++;
    if (rc != DC_FAIL) {
        tu_failures++;
        fprintf(stderr, "test_config.c:%d: FAILED: load succeeded, expected an error for:\n%s\n", line, text);
        return;
    }
    const char *msg = dc_last_error();
    for (int i = 0; frags[i]; i++) {
        tu_checks++;
        if (!strstr(msg, frags[i])) {
            tu_failures++;
            fprintf(stderr, "test_config.c:%d: FAILED: message lacks \"%s\": %s\n", line, frags[i], msg);
        }
    }
    /* a failed load leaves the config exactly as it was */
    EXPECTF(memcmp(&cfg, &before, sizeof cfg) == 0, "config modified by a failed load (line %d)", line);
}

#define EXPECT_SET_FAILS(cfgp, assignment, ...)                                                              \
    do {                                                                                                     \
        const char *frags_[] = {__VA_ARGS__, NULL};                                                          \
        dc_config saved_;                                                                                    \
        memcpy(&saved_, (cfgp), sizeof saved_);                                                              \
        int rc_ = dc_config_set((cfgp), (assignment));                                                       \
        EXPECTF(rc_ == DC_FAIL, "set '%s' succeeded", assignment);                                           \
        for (int i_ = 0; frags_[i_]; i_++)                                                                   \
            EXPECTF(strstr(dc_last_error(), frags_[i_]) != NULL, "message lacks \"%s\": %s", frags_[i_],     \
                    dc_last_error());                                                                        \
        EXPECTF(memcmp(&saved_, (cfgp), sizeof saved_) == 0, "failed set modified the config");              \
    } while (0)

static int feq(double a, double b) {
    return fabs(a - b) <= 1e-6 * (fabs(b) + 1e-12);
}

/* write -> load over fresh defaults -> identical struct and identical text */
static void expect_round_trip(const dc_config *cfg, const char *what) {
    char p1[512], p2[512];
    snprintf(p1, sizeof p1, "%s/rt1.yaml", tmpdir);
    snprintf(p2, sizeof p2, "%s/rt2.yaml", tmpdir);
    REQUIRE(dc_config_write(cfg, p1) == DC_OK);
    dc_config back;
    dc_config_defaults(&back);
    int rc = dc_config_load(&back, p1);
    EXPECTF(rc == DC_OK, "%s: reloading the written config failed: %s", what, dc_last_error());
    if (rc != DC_OK) return;
    memcpy(back.source_path, cfg->source_path, sizeof back.source_path);
    EXPECTF(memcmp(&back, cfg, sizeof back) == 0, "%s: struct differs after write -> load", what);
    REQUIRE(dc_config_write(&back, p2) == DC_OK);
    char *t1 = read_all(p1, NULL), *t2 = read_all(p2, NULL);
    EXPECTF(t1 && t2 && strcmp(t1, t2) == 0, "%s: written text differs after a round trip", what);
    EXPECTF(dc_config_hash(&back) == dc_config_hash(cfg), "%s: hash differs after a round trip", what);
    free(t1);
    free(t2);
}

static void test_defaults(void) {
    dc_config c;
    dc_config_defaults(&c);
    EXPECT(!strcmp(c.training_opt.dataset, "fashion_mnist"));
    EXPECT(!strcmp(c.training_opt.data_root, "/usr/share/datasets/fashion-mnist"));
    EXPECT(c.training_opt.in_channels == 1 && c.training_opt.image_size == 28);
    EXPECT(feq(c.training_opt.mean[0], 0.2860) && feq(c.training_opt.std[0], 0.3530));
    EXPECT(c.training_opt.mean[1] == 0.0f && c.training_opt.std[1] == 0.0f);
    EXPECT(c.training_opt.num_classes == 10);
    EXPECT(!strcmp(c.feat_model.arch, "resnet20"));
    EXPECT(c.training_opt.batch_size == 128 && c.training_opt.num_epochs == 2);
    EXPECT(feq(c.feat_model.optim.lr, 0.1) && feq(c.feat_model.optim.momentum, 0.9));
    EXPECT(feq(c.feat_model.optim.weight_decay, 5e-4));
    EXPECT(memcmp(&c.classifier.optim, &c.feat_model.optim, sizeof c.classifier.optim) == 0);
    EXPECT(c.scheduler.type == DC_SCHED_COSINE && c.scheduler.per_step == 0 && c.endlr == 0.0);
    EXPECT(c.training_opt.seed == 0 && c.training_opt.display_step == 50);
    EXPECT(!strcmp(c.training_opt.log_dir, "runs/default"));
    EXPECT(c.training_opt.sampler.type == DC_SAMPLER_INSTANCE);
    EXPECT(c.training_opt.sampler.num_samples_cls == 4 && c.training_opt.sampler.q == 0.5);
    EXPECT(c.classifier.head == DC_HEAD_LINEAR && c.classifier.feat_dim == 0);
    EXPECT(c.source_path[0] == '\0' && c.init_weights[0] == '\0');
    EXPECTF(dc_config_validate(&c) == DC_OK, "defaults do not validate: %s", dc_last_error());
    int n = 0;
    while (dc_config_key_path(n)) n++;
    EXPECT(n > 60);
    EXPECT(dc_config_key_path(-1) == NULL);
}

static void test_reference_inat(void) {
    dc_config c;
    dc_config_defaults(&c);
    const char *path = DC_FIXTURES "/config_reference_inat_stage1.yaml";
    int rc = dc_config_load(&c, path);
    REQUIRE(rc == DC_OK || (fprintf(stderr, "%s\n", dc_last_error()), 0));
    EXPECT(!strcmp(c.source_path, path));
    EXPECT(!strcmp(c.feat_model.arch, "resnet50"));
    EXPECT(c.feat_model.fix == 0);
    EXPECT(c.classifier.head == DC_HEAD_LINEAR && c.classifier.feat_dim == 2048);
    EXPECT(feq(c.feat_model.optim.lr, 0.2) && feq(c.feat_model.optim.weight_decay, 1e-4));
    EXPECT(feq(c.classifier.optim.lr, 0.2) && feq(c.classifier.optim.momentum, 0.9));
    EXPECT(c.scheduler.type == DC_SCHED_COSINE && c.endlr == 0.0);
    EXPECT(c.scheduler.num_milestones == 0); /* step_size is ignored under coslr: true */
    EXPECT(feq(c.scheduler.gamma, 0.1));
    EXPECT(c.training_opt.batch_size == 512 && c.training_opt.num_epochs == 90);
    EXPECT(c.training_opt.num_classes == 8142 && c.training_opt.display_step == 10);
    EXPECT(c.training_opt.sampler.type == DC_SAMPLER_INSTANCE && c.training_opt.shuffle == 0);
    EXPECT(!strcmp(c.training_opt.log_dir, "./logs/iNaturalist18/models/resnet50_uniform_e90"));
    EXPECT(c.init_weights[0] == '\0'); /* model_dir: null */
    EXPECT(c.optimizer.loss_logit_adjust_tau == 0.0f);
    /* the iNaturalist18 preset: list files, 224 crops, its own statistics, no colour jitter, no test list */
    EXPECT(!strcmp(c.training_opt.dataset, "list"));
    EXPECT(!strcmp(c.training_opt.train_list, "data/iNaturalist18/iNaturalist18_train.txt"));
    EXPECT(!strcmp(c.training_opt.val_list, "data/iNaturalist18/iNaturalist18_val.txt"));
    EXPECT(c.training_opt.test_list[0] == '\0');
    EXPECT(c.training_opt.in_channels == 3 && c.training_opt.image_size == 224);
    EXPECT(c.training_opt.resize_size == 256 && c.training_opt.augment == DC_AUG_IMAGENET);
    EXPECT(c.training_opt.color_jitter == 0.0f);
    EXPECT(feq(c.training_opt.mean[0], 0.466) && feq(c.training_opt.std[2], 0.192));
    EXPECTF(dc_config_validate(&c) == DC_OK, "%s", dc_last_error());
    expect_round_trip(&c, "reference iNat stage 1");
}

static void test_reference_lws(void) {
    dc_config c;
    dc_config_defaults(&c);
    int rc = dc_config_load(&c, DC_FIXTURES "/config_reference_imagenet_lws.yaml");
    REQUIRE(rc == DC_OK || (fprintf(stderr, "%s\n", dc_last_error()), 0));
    EXPECT(!strcmp(c.feat_model.arch, "resnext50_32x4d") && c.feat_model.fix == 1);
    EXPECT(c.classifier.head == DC_HEAD_LWS);
    EXPECT(c.training_opt.sampler.type == DC_SAMPLER_CLASS_AWARE);
    EXPECT(c.training_opt.sampler.num_samples_cls == 4);
    EXPECT(c.training_opt.shuffle == 1); /* top-level shuffle */
    EXPECT(!strcmp(c.init_weights, "./logs/ImageNet_LT/models/resnext50_uniform_e90/final.safetensors"));
    EXPECT(c.training_opt.num_epochs == 5 && c.training_opt.num_classes == 1000);
    EXPECT(feq(c.training_opt.color_jitter, 0.4) && feq(c.training_opt.mean[0], 0.485));
    EXPECT(!strcmp(c.training_opt.test_list, "data/ImageNet_LT/ImageNet_LT_test.txt"));
    EXPECTF(dc_config_validate(&c) == DC_OK, "%s", dc_last_error());
    expect_round_trip(&c, "reference ImageNet-LT LWS");
}

static void test_native(void) {
    dc_config c;
    dc_config_defaults(&c);
    int rc = dc_config_load(&c, DC_FIXTURES "/config_native_cifar10_lt.yaml");
    REQUIRE(rc == DC_OK || (fprintf(stderr, "%s\n", dc_last_error()), 0));
    EXPECT(c.training_opt.seed == 7 && !strcmp(c.training_opt.dataset, "cifar10"));
    EXPECT(c.training_opt.imb_type == DC_IMB_EXP && c.training_opt.imb_factor == 100.0);
    EXPECT(c.training_opt.val_per_class == 20 && c.training_opt.in_channels == 3);
    EXPECT(feq(c.training_opt.std[1], 0.2435) && c.training_opt.std[3] == 0.0f);
    EXPECT(c.training_opt.sampler.type == DC_SAMPLER_POWER && c.training_opt.sampler.q == 0.5);
    EXPECT(c.scheduler.type == DC_SCHED_MULTISTEP && c.scheduler.num_milestones == 2);
    EXPECT(c.scheduler.milestones[0] == 160 && c.scheduler.milestones[1] == 180);
    EXPECT(c.scheduler.gamma == 0.01 && c.scheduler.warmup_epochs == 5.0 && c.scheduler.warmup_start == 0.2);
    EXPECT(c.optimizer.nesterov == 1 && c.optimizer.no_decay_bn_bias == 1);
    EXPECT(!strcmp(c.feat_model.arch, "resnet32") && feq(c.feat_model.optim.weight_decay, 2e-4));
    EXPECTF(dc_config_validate(&c) == DC_OK, "%s", dc_last_error());
    expect_round_trip(&c, "native CIFAR-10-LT");
}

/* Reference sampler and scheduler mappings, from inline documents. */
static void test_reference_mappings(void) {
    dc_config c;
    dc_config_defaults(&c);
    int rc = dc_config_load(
        &c, tmp_yaml("training_opt:\n"
                     "  num_epochs: 90\n"
                     "  sampler: {alpha: 1.0, cycle: 0, decay_gap: 30, def_file: "
                     "./data/MixedPrioritizedSampler.py,\n"
                     "    epochs: 90, fixed_scale: 1, lam: 1.0, manual_only: true, nroot: 2.0,"
                     " ptype: score,\n"
                     "    rescale: false, root_decay: null, type: MixedPrioritizedSampler}\n"));
    EXPECTF(rc == DC_OK, "%s", dc_last_error());
    EXPECT(c.training_opt.sampler.type == DC_SAMPLER_POWER && c.training_opt.sampler.q == 0.5);

    dc_config_defaults(&c);
    rc = dc_config_load(&c, tmp_yaml("training_opt:\n  sampler:\n    type: MixedPrioritizedSampler\n"
                                     "    nroot: null\n    manual_only: true\n"));
    EXPECTF(rc == DC_OK, "%s", dc_last_error());
    EXPECT(c.training_opt.sampler.type == DC_SAMPLER_POWER && c.training_opt.sampler.q == 0.0);

    dc_config_defaults(&c);
    rc = dc_config_load(
        &c, tmp_yaml("training_opt:\n"
                     "  sampler: {alpha: 1.0, cycle: 0, decay_gap: 30, def_file: "
                     "./data/ClassPrioritySampler.py,\n"
                     "    epochs: 90, fixed_scale: 1, lam: null, manual_only: true, momentum: 0.0,"
                     " nroot: null,\n"
                     "    pri_mode: train, ptype: score, rescale: false, root_decay: null, type: "
                     "ClassPrioritySampler}\n"));
    EXPECTF(rc == DC_OK, "%s", dc_last_error());
    EXPECT(c.training_opt.sampler.type == DC_SAMPLER_PROGRESSIVE && c.training_opt.sampler.pb_epochs == 90);

    /* native sampler names and aliases */
    dc_config_defaults(&c);
    rc = dc_config_load(&c,
                        tmp_yaml("training_opt:\n  sampler: {type: class_balanced, num_samples_cls: 2}\n"));
    EXPECTF(rc == DC_OK, "%s", dc_last_error());
    EXPECT(c.training_opt.sampler.type == DC_SAMPLER_CLASS_AWARE &&
           c.training_opt.sampler.num_samples_cls == 2);
    dc_config_defaults(&c);
    rc = dc_config_load(&c, tmp_yaml("training_opt:\n  sampler: {type: power, q: 0.25}\n"));
    EXPECT(rc == DC_OK && c.training_opt.sampler.q == 0.25);

    /* coslr: false -> StepLR as multistep milestones; without step_size -> constant */
    dc_config_defaults(&c);
    rc = dc_config_load(&c, tmp_yaml("coslr: false\ntraining_opt:\n  num_epochs: 90\n"
                                     "  scheduler_params: {gamma: 0.5, step_size: 30}\n"));
    EXPECTF(rc == DC_OK, "%s", dc_last_error());
    EXPECT(c.scheduler.type == DC_SCHED_MULTISTEP && c.scheduler.num_milestones == 2);
    EXPECT(c.scheduler.milestones[0] == 30 && c.scheduler.milestones[1] == 60 && c.scheduler.gamma == 0.5);
    EXPECTF(dc_config_validate(&c) == DC_OK, "%s", dc_last_error());
    dc_config_defaults(&c);
    rc = dc_config_load(&c, tmp_yaml("coslr: false\n"));
    EXPECT(rc == DC_OK && c.scheduler.type == DC_SCHED_CONSTANT);

    /* BALMS' Balanced Softmax loss = logit adjustment with tau 1 */
    dc_config_defaults(&c);
    rc = dc_config_load(
        &c, tmp_yaml("criterions:\n  PerformanceLoss:\n    def_file: ./loss/BalancedSoftmaxLoss.py\n"
                     "    loss_params: {freq_path: ./cls_freq/x.json}\n    weight: 1\n"));
    EXPECTF(rc == DC_OK, "%s", dc_last_error());
    EXPECT(c.optimizer.loss_logit_adjust_tau == 1.0f);

    /* other backbones by def_file, aliases that agree, YAML 1.1 booleans, sections given as null */
    dc_config_defaults(&c);
    rc = dc_config_load(&c, tmp_yaml("networks:\n  feat_model:\n    def_file: ./models/ResNet10Feature.py\n"
                                     "    fix: yes\n    params: {in_channels: 1}\n"
                                     "  classifier:\n    def_file: DotProductClassifier\n"
                                     "    params: {feat_dim: 512, num_classes: 10}\n"
                                     "training_opt:\n  num_classes: 10\n  feature_dim: 512\n  seed: 42\n"
                                     "memory: null\n"));
    EXPECTF(rc == DC_OK, "%s", dc_last_error());
    EXPECT(!strcmp(c.feat_model.arch, "resnet10") && c.feat_model.fix == 1 && c.classifier.feat_dim == 512);
    EXPECT(c.training_opt.seed == 42);

    /* empty and comment-only files mean "all defaults"; a document marker alone too */
    dc_config d;
    static const char *const empties[] = {"", "# only a comment\n\n", "---\n", "---\n...\n"};
    for (int i = 0; i < 4; i++) {
        dc_config_defaults(&c);
        dc_config_defaults(&d);
        rc = dc_config_load(&c, tmp_yaml(empties[i]));
        EXPECTF(rc == DC_OK, "empty variant %d: %s", i, dc_last_error());
        memset(c.source_path, 0, sizeof c.source_path);
        EXPECTF(memcmp(&c, &d, sizeof c) == 0, "empty variant %d changed the config", i);
    }

    /* a load applies over what is there: a second file changes only its own keys */
    dc_config_defaults(&c);
    REQUIRE(dc_config_load(&c, tmp_yaml("training_opt: {batch_size: 64, num_epochs: 3}\n")) == DC_OK);
    REQUIRE(dc_config_load(&c, tmp_yaml("training_opt: {batch_size: 32}\n")) == DC_OK);
    EXPECT(c.training_opt.batch_size == 32 && c.training_opt.num_epochs == 3);
}

static void test_errors(void) {
    /* wrong values: the line of the value and the key path */
    EXPECT_LOAD_FAILS("seed: 1\n"
                      "training_opt:\n"
                      "  dataset: mnist\n"
                      "  num_epochs: 3\n"
                      "\n"
                      "  # the batch\n"
                      "  batch_size: abc\n",
                      "cfg.yaml:7: training_opt.batch_size: expected an integer", "got 'abc'");
    EXPECT_LOAD_FAILS("training_opt:\n  batch_size: 0\n", "cfg.yaml:2: training_opt.batch_size:", "got '0'",
                      "in [1,");
    EXPECT_LOAD_FAILS("training_opt:\n  batch_size: 12.5\n", "cfg.yaml:2: training_opt.batch_size:");
    EXPECT_LOAD_FAILS("training_opt:\n  in_channels: 7\n",
                      "cfg.yaml:2: training_opt.in_channels:", "in [1, 4]");
    EXPECT_LOAD_FAILS("training_opt:\n  imb_factor: 0.5\n", "cfg.yaml:2: training_opt.imb_factor:", ">= 1");
    EXPECT_LOAD_FAILS("training_opt:\n  imb_type: expo\n",
                      "cfg.yaml:2: training_opt.imb_type:", "one of none, exp, step", "'expo'");
    EXPECT_LOAD_FAILS("scheduler:\n  type: linear\n",
                      "cfg.yaml:2: scheduler.type:", "constant, multistep, cosine");
    EXPECT_LOAD_FAILS("networks:\n  feat_model:\n    arch: resnet51\n",
                      "cfg.yaml:3: networks.feat_model.arch:", "resnext50_32x4d");
    EXPECT_LOAD_FAILS("training_opt:\n  shuffle: maybe\n",
                      "cfg.yaml:2: training_opt.shuffle:", "true or false");
    EXPECT_LOAD_FAILS("training_opt:\n  shuffle: 1\n", "cfg.yaml:2: training_opt.shuffle:", "true or false");
    /* a mapping or a list where a scalar belongs; a scalar where a section belongs */
    EXPECT_LOAD_FAILS("training_opt:\n  batch_size:\n    value: 3\n",
                      "cfg.yaml:3: training_opt.batch_size:", "got a mapping");
    EXPECT_LOAD_FAILS("training_opt:\n  batch_size: [1, 2]\n",
                      "cfg.yaml:2: training_opt.batch_size:", "got a list");
    EXPECT_LOAD_FAILS("training_opt: 5\n", "cfg.yaml:1: training_opt:", "expected a mapping");
    EXPECT_LOAD_FAILS("training_opt:\n  log_dir: {a: 1}\n",
                      "cfg.yaml:2: training_opt.log_dir:", "expected a string");
    EXPECT_LOAD_FAILS("- a\n- b\n", "cfg.yaml:1:", "at the top level");
    /* quoted numbers are strings */
    EXPECT_LOAD_FAILS("training_opt:\n  batch_size: \"512\"\n",
                      "cfg.yaml:2: training_opt.batch_size:", "quoted string '512'");
    /* null where a number belongs */
    EXPECT_LOAD_FAILS("training_opt:\n  batch_size:\n", "cfg.yaml:2: training_opt.batch_size:", "got null");
    /* overflow and non-finite numbers */
    EXPECT_LOAD_FAILS("training_opt:\n  batch_size: 99999999999999999999999\n",
                      "cfg.yaml:2: training_opt.batch_size:", "out of range");
    EXPECT_LOAD_FAILS("training_opt:\n  max_steps: 9223372036854775808\n",
                      "cfg.yaml:2: training_opt.max_steps:", "out of range");
    EXPECT_LOAD_FAILS("training_opt:\n  num_classes: 4294967297\n",
                      "cfg.yaml:2: training_opt.num_classes:", "out of range");
    EXPECT_LOAD_FAILS("seed: -1\n", "cfg.yaml:1: seed:");
    EXPECT_LOAD_FAILS("seed: 18446744073709551616\n", "cfg.yaml:1: seed:", "out of range");
    EXPECT_LOAD_FAILS("endlr: .nan\n", "cfg.yaml:1: endlr:", "not finite");
    EXPECT_LOAD_FAILS("endlr: .inf\n", "cfg.yaml:1: endlr:", "not finite");
    EXPECT_LOAD_FAILS("endlr: -inf\n", "cfg.yaml:1: endlr:", "not finite");
    EXPECT_LOAD_FAILS("endlr: NaN\n", "cfg.yaml:1: endlr:", "not finite");
    EXPECT_LOAD_FAILS("endlr: 1e999\n", "cfg.yaml:1: endlr:", "out of range");
    EXPECT_LOAD_FAILS("networks:\n  classifier:\n    optim_params: {lr: 1e39}\n",
                      "cfg.yaml:3: networks.classifier.optim_params.lr:");
    EXPECT_LOAD_FAILS("endlr: 0x10\n", "cfg.yaml:1: endlr:", "expected a finite number");
    EXPECT_LOAD_FAILS("training_opt:\n  mean: [0.5, .nan]\n",
                      "cfg.yaml:2: training_opt.mean[1]:", "not finite");
    EXPECT_LOAD_FAILS("training_opt:\n  std: [0]\n", "cfg.yaml:2: training_opt.std[0]:", "> 0");
    EXPECT_LOAD_FAILS("training_opt:\n  std: 0.3\n", "cfg.yaml:2: training_opt.std:", "expected a list");
    EXPECT_LOAD_FAILS("training_opt:\n  mean: [1, 2, 3, 4, 5]\n",
                      "cfg.yaml:2: training_opt.mean:", "at most 4");
    EXPECT_LOAD_FAILS("training_opt:\n  in_channels: 3\n  mean: [0.5]\n",
                      "cfg.yaml:3: training_opt.mean:", "in_channels is 3");
    EXPECT_LOAD_FAILS("scheduler:\n  milestones: [10, x]\n", "cfg.yaml:2: scheduler.milestones[1]:");
    /* strings */
    {
        char big[DC_PATH_MAX + 64];
        int o = snprintf(big, sizeof big, "training_opt:\n  log_dir: ");
        memset(big + o, 'x', DC_PATH_MAX);
        big[o + DC_PATH_MAX] = '\n';
        big[o + DC_PATH_MAX + 1] = '\0';
        EXPECT_LOAD_FAILS(big, "cfg.yaml:2: training_opt.log_dir:", "too long");
    }
    EXPECT_LOAD_FAILS("training_opt:\n  log_dir: \"a\\0b\"\n", "cfg.yaml:2: training_opt.log_dir:", "NUL");

    /* unknown keys, with suggestions */
    EXPECT_LOAD_FAILS("training_opt:\n  num_epochs: 3\n  bach_size: 4\n",
                      "cfg.yaml:3: training_opt.bach_size: unknown key 'training_opt.bach_size'",
                      "did you mean 'training_opt.batch_size'?");
    EXPECT_LOAD_FAILS("batch_size: 4\n", "cfg.yaml:1: batch_size: unknown key 'batch_size'",
                      "did you mean 'training_opt.batch_size'?");
    EXPECT_LOAD_FAILS("trainig_opt:\n  batch_size: 4\n",
                      "cfg.yaml:1: trainig_opt:", "did you mean 'training_opt'?");
    EXPECT_LOAD_FAILS("networks:\n  classifier:\n    optim_param: {lr: 0.1}\n",
                      "cfg.yaml:3: networks.classifier.optim_param:", "networks.classifier.optim_params");
    EXPECT_LOAD_FAILS("zzzz_qqqq: 1\n", "cfg.yaml:1: zzzz_qqqq: unknown key 'zzzz_qqqq'");
    EXPECT_LOAD_FAILS("criterions:\n  OtherLoss: {def_file: x}\n",
                      "cfg.yaml:2: criterions.OtherLoss:", "unknown key");

    /* duplicate keys, non-scalar keys */
    EXPECT_LOAD_FAILS("training_opt:\n  batch_size: 4\n  num_epochs: 2\n  batch_size: 8\n",
                      "cfg.yaml:4: training_opt.batch_size: duplicate key (first given at line 2)");
    EXPECT_LOAD_FAILS("? [a, b]\n: 1\n", "cfg.yaml:1:", "as a key");

    /* YAML syntax errors, with libyaml's line and column */
    EXPECT_LOAD_FAILS("training_opt:\n  batch_size: 4\n num_epochs: 2\n", "cfg.yaml:3:", "YAML syntax error");
    EXPECT_LOAD_FAILS("training_opt: {batch_size: 4\n", "cfg.yaml:2:", "YAML syntax error");
    EXPECT_LOAD_FAILS("seed: 1\nseed2: [1, 2\n\nx: 3\n", "cfg.yaml:", "YAML syntax error");
    EXPECT_LOAD_FAILS("a: *undefined\n", "cfg.yaml:1:", "YAML syntax error");
    EXPECT_LOAD_FAILS("seed: 1\n---\nseed: 2\n", "cfg.yaml:3:", "second YAML document");
    EXPECT_LOAD_FAILS("---\n---\nseed: 2\n", "cfg.yaml:3:", "second YAML document");
    EXPECT_LOAD_FAILS("training_opt.batch_size: 4\n", "cfg.yaml:1:", "contains a '.'");
    /* bytes that are not UTF-8 (latin-1 e-acute on line 3) */
    {
        const char bad[] = "seed: 1\ntraining_opt:\n  log_dir: caf\xe9\n";
        const char *frags[] = {"cfg.yaml:3:", "UTF-8", NULL};
        expect_load_fails(__LINE__, bad, sizeof bad - 1, frags);
    }
    {
        const char nul[] = "seed: 1\n\0seed: 2\n";
        const char *frags[] = {"cfg.yaml:2:", NULL};
        expect_load_fails(__LINE__, nul, sizeof nul - 1, frags);
    }

    /* reference keys holding values whose semantics are not implemented */
    EXPECT_LOAD_FAILS("memory: {centroids: true, init_centroids: false}\n",
                      "cfg.yaml:1: memory.centroids:", "expected false");
    EXPECT_LOAD_FAILS("criterions:\n  FeatureLoss: {def_file: ./loss/DiscCentroidsLoss.py}\n",
                      "cfg.yaml:2: criterions.FeatureLoss:", "DiscCentroidsLoss");
    EXPECT_LOAD_FAILS("criterions:\n  PerformanceLoss: {def_file: ./loss/FocalLoss.py}\n",
                      "cfg.yaml:2: criterions.PerformanceLoss.def_file:", "unknown loss");
    EXPECT_LOAD_FAILS("criterions:\n  PerformanceLoss: {weight: 0.5}\n",
                      "cfg.yaml:2: criterions.PerformanceLoss.weight:", "expected 1.0");
    EXPECT_LOAD_FAILS("networks:\n  feat_model:\n    params: {use_fc: true}\n",
                      "cfg.yaml:3: networks.feat_model.params.use_fc:");
    EXPECT_LOAD_FAILS("networks:\n  feat_model:\n    params: {dropout: 0.5}\n",
                      "cfg.yaml:3: networks.feat_model.params.dropout:");
    EXPECT_LOAD_FAILS("networks:\n  feat_model:\n    def_file: ./models/ResNext152Feature.py\n",
                      "cfg.yaml:3: networks.feat_model.def_file:", "unknown backbone");
    EXPECT_LOAD_FAILS("networks:\n  classifier:\n    def_file: ./models/KNNClassifier.py\n",
                      "cfg.yaml:3: networks.classifier.def_file:", "post-hoc");
    EXPECT_LOAD_FAILS(
        "training_opt:\n  sampler: {type: MixedPrioritizedSampler, nroot: 2.0, root_decay: exp}\n",
        "cfg.yaml:2: training_opt.sampler.root_decay:", "expected null");
    EXPECT_LOAD_FAILS("training_opt:\n  sampler:\n    type: MixedPrioritizedSampler\n    nroot: 2.0\n"
                      "    manual_only: false\n",
                      "cfg.yaml:5: training_opt.sampler.manual_only:", "expected true");
    EXPECT_LOAD_FAILS("training_opt:\n  sampler:\n    type: MixedPrioritizedSampler\n    lam: 0.5\n",
                      "cfg.yaml:4: training_opt.sampler.lam:");
    EXPECT_LOAD_FAILS("training_opt:\n  sampler:\n    type: MixedPrioritizedSampler\n",
                      "cfg.yaml:3: training_opt.sampler:", "needs nroot");
    EXPECT_LOAD_FAILS("training_opt:\n  sampler: {type: MixedPrioritizedSampler, nroot: 0.5}\n",
                      "cfg.yaml:2: training_opt.sampler.nroot:", ">= 1");
    EXPECT_LOAD_FAILS("training_opt:\n  sampler: {type: ClassPrioritySampler, cycle: 1}\n",
                      "cfg.yaml:2: training_opt.sampler.cycle:", "expected 0");
    EXPECT_LOAD_FAILS("training_opt:\n  sampler: {type: ClassPrioritySampler, lam: 0.5}\n",
                      "cfg.yaml:2: training_opt.sampler.lam:", "expected null");
    EXPECT_LOAD_FAILS("training_opt:\n  sampler:\n    type: ClassAwareSampler\n    q: 0.5\n",
                      "cfg.yaml:4: training_opt.sampler.q:", "not a key of sampler type ClassAwareSampler");
    EXPECT_LOAD_FAILS("training_opt:\n  sampler: {type: uniform}\n",
                      "cfg.yaml:2: training_opt.sampler.type:", "ClassAwareSampler");
    EXPECT_LOAD_FAILS("training_opt:\n  sampler: {typ: power}\n",
                      "cfg.yaml:2: training_opt.sampler.typ:", "did you mean 'training_opt.sampler.type'?");
    EXPECT_LOAD_FAILS("training_opt:\n  sampler: class_aware\n",
                      "cfg.yaml:2: training_opt.sampler:", "expected null");
    EXPECT_LOAD_FAILS("training_opt:\n  dataset: imagenet\n",
                      "cfg.yaml:2: training_opt.dataset:", "iNaturalist18");

    /* two keys for one field that disagree */
    EXPECT_LOAD_FAILS(
        "training_opt:\n  num_classes: 10\nnetworks:\n  classifier:\n    params: {num_classes: 12}\n",
        "cfg.yaml:5: networks.classifier.params.num_classes:",
        "conflicts with 'training_opt.num_classes' at line 2");
    EXPECT_LOAD_FAILS("training_opt:\n  feature_dim: 2048\nnetworks:\n  classifier:\n    params:\n"
                      "      feat_dim: 512\n",
                      "cfg.yaml:6: networks.classifier.params.feat_dim:", "conflicts with");
    EXPECT_LOAD_FAILS("coslr: true\nscheduler:\n  type: multistep\n",
                      "cfg.yaml:3: scheduler.type:", "conflicts with 'coslr' at line 1");
    EXPECT_LOAD_FAILS("scheduler:\n  type: cosine\ncoslr: false\n", "cfg.yaml:3: coslr: false conflicts");
    EXPECT_LOAD_FAILS(
        "networks:\n  feat_model:\n    arch: resnet18\n    def_file: ./models/ResNet50Feature.py\n",
        "cfg.yaml:4: networks.feat_model.def_file:", "conflicts with 'networks.feat_model.arch'");
    EXPECT_LOAD_FAILS("training_opt:\n  sampler: {type: square_root, q: 0.3}\n",
                      "cfg.yaml:2: training_opt.sampler.q:", "conflicts");
    EXPECT_LOAD_FAILS("seed: 1\ntraining_opt: {seed: 2}\n", "cfg.yaml:2: training_opt.seed:", "conflicts");
    EXPECT_LOAD_FAILS("coslr: false\ntraining_opt:\n  num_epochs: 90\n  scheduler_params: {step_size: 1}\n",
                      "cfg.yaml:4: training_opt.scheduler_params.step_size:", "more than 16 milestones");

    /* files that cannot be read */
    {
        dc_config c;
        dc_config_defaults(&c);
        char missing[512];
        snprintf(missing, sizeof missing, "%s/does_not_exist.yaml", tmpdir);
        EXPECT(dc_config_load(&c, missing) == DC_FAIL);
        EXPECT(strstr(dc_last_error(), missing) && strstr(dc_last_error(), "No such file or directory"));
        EXPECT(dc_config_load(&c, tmpdir) == DC_FAIL);
        EXPECTF(strstr(dc_last_error(), tmpdir) && strstr(dc_last_error(), "Is a directory"), "%s",
                dc_last_error());
        if (geteuid() != 0) { /* root reads anything */
            const char *p = tmp_yaml("seed: 1\n");
            chmod(p, 0);
            EXPECT(dc_config_load(&c, p) == DC_FAIL && strstr(dc_last_error(), "Permission denied"));
            chmod(p, 0644);
        }
    }
}

static void test_set(void) {
    dc_config c;
    dc_config_defaults(&c);
    EXPECT(dc_config_set(&c, "training_opt.batch_size=256") == DC_OK && c.training_opt.batch_size == 256);
    EXPECT(dc_config_set(&c, "networks.feat_model.optim_params.lr=0.05") == DC_OK);
    EXPECT(feq(c.feat_model.optim.lr, 0.05));
    EXPECT(dc_config_set(&c, "training_opt.sampler.type=ClassAwareSampler") == DC_OK);
    EXPECT(c.training_opt.sampler.type == DC_SAMPLER_CLASS_AWARE &&
           c.training_opt.sampler.num_samples_cls == 4);
    EXPECT(dc_config_set(&c, "training_opt.sampler={type: square_root}") == DC_OK);
    EXPECT(c.training_opt.sampler.type == DC_SAMPLER_POWER && c.training_opt.sampler.q == 0.5);
    EXPECT(dc_config_set(&c, "training_opt.sampler=null") == DC_OK);
    EXPECT(c.training_opt.sampler.type == DC_SAMPLER_INSTANCE);
    EXPECT(dc_config_set(&c, "training_opt.in_channels=3") == DC_OK);
    EXPECT(dc_config_validate(&c) == DC_FAIL && strstr(dc_last_error(), "training_opt.std") &&
           strstr(dc_last_error(), "fewer values"));
    EXPECT(dc_config_set(&c, "training_opt.mean=[0.5, 0.5, 0.5]") == DC_OK);
    EXPECT(dc_config_set(&c, "training_opt.std=[0.25,0.25,0.25]") == DC_OK);
    EXPECT(c.training_opt.std[2] == 0.25f && c.training_opt.std[3] == 0.0f);
    EXPECT(dc_config_set(&c, "training_opt.dataset=cifar10") == DC_OK);
    EXPECTF(dc_config_validate(&c) == DC_OK, "%s", dc_last_error());
    /* values are YAML: quote a string that holds ": " or " #" */
    EXPECT(dc_config_set(&c, "training_opt.log_dir=\"runs/a b: c #1\"") == DC_OK);
    EXPECT(!strcmp(c.training_opt.log_dir, "runs/a b: c #1"));
    EXPECT(dc_config_set(&c, "training_opt.log_dir=runs/exp#2") == DC_OK);
    EXPECT(!strcmp(c.training_opt.log_dir, "runs/exp#2"));
    EXPECT(dc_config_set(&c, "init_weights=") == DC_OK && c.init_weights[0] == '\0');
    EXPECT(dc_config_set(&c, "model_dir=stage1/final.safetensors") == DC_OK);
    EXPECT(!strcmp(c.init_weights, "stage1/final.safetensors"));
    EXPECT(dc_config_set(&c, "coslr=false") == DC_OK && c.scheduler.type == DC_SCHED_CONSTANT);
    EXPECT(dc_config_set(&c, "scheduler.type=cosine") == DC_OK && c.scheduler.type == DC_SCHED_COSINE);
    EXPECT(dc_config_set(&c, "seed=18446744073709551615") == DC_OK && c.training_opt.seed == UINT64_MAX);
    EXPECT(dc_config_set(&c, "scheduler.milestones=[3, 5]") == DC_OK && c.scheduler.num_milestones == 2);
    EXPECT(dc_config_set(&c, "scheduler.milestones=[]") == DC_OK && c.scheduler.num_milestones == 0);

    EXPECT_SET_FAILS(&c, "training_opt.bach_size=4", "--set", "unknown key 'training_opt.bach_size'",
                     "did you mean 'training_opt.batch_size'?");
    EXPECT_SET_FAILS(&c, "training_opt.batch_size=abc", "--set: training_opt.batch_size: expected an integer",
                     "'abc'");
    EXPECT_SET_FAILS(&c, "training_opt.batch_size=-3", "training_opt.batch_size", "got '-3'");
    EXPECT_SET_FAILS(&c, "training_opt.batch_size", "key.path=value");
    EXPECT_SET_FAILS(&c, "=3", "key.path=value");
    EXPECT_SET_FAILS(&c, "training_opt..batch_size=3", "not a key path");
    EXPECT_SET_FAILS(&c, "training_opt.batch size=3", "not a key path");
    EXPECT_SET_FAILS(&c, "training_opt=3", "training_opt", "expected a mapping");
    EXPECT_SET_FAILS(&c, "training_opt.mean=[0.1, 0.2", "--set", "YAML syntax error");
    EXPECT_SET_FAILS(&c, "training_opt.sampler={type: square_root, q: 0.3}", "training_opt.sampler.q",
                     "conflicts");
    EXPECT_SET_FAILS(&c, "training_opt.sampler.nroot=2", "not a key of sampler type");
    EXPECT_SET_FAILS(&c, "endlr=nan", "endlr", "not finite");
    EXPECT_SET_FAILS(&c, "training_opt.log_dir=a\nb", "line break");
    EXPECT_SET_FAILS(&c, "training_opt.log_dir=runs/a b: c", "--set", "YAML syntax error");
}

static void test_round_trip(void) {
    /* awkward strings and values */
    dc_config c;
    dc_config_defaults(&c);
    static const char *const strings[] = {"plain",
                                          "with space",
                                          "colon: inside",
                                          "# hash",
                                          "quote \" and \\ backslash",
                                          "caf\xc3\xa9",
                                          " leading",
                                          "trailing ",
                                          "tab\there",
                                          "null",
                                          "true",
                                          "123",
                                          "-",
                                          "[x]",
                                          "{a: b}",
                                          "'single'",
                                          "",
                                          "line\nbreak",
                                          "\x7f",
                                          "*star &amp !bang %pct @at `tick`"};
    for (size_t i = 0; i < sizeof strings / sizeof strings[0]; i++) {
        /* the loader zero-fills string buffers, so the struct compares with memcmp only if we do too */
        memset(c.training_opt.log_dir, 0, sizeof c.training_opt.log_dir);
        memset(c.init_weights, 0, sizeof c.init_weights);
        snprintf(c.training_opt.log_dir, sizeof c.training_opt.log_dir, "%s", strings[i]);
        snprintf(c.init_weights, sizeof c.init_weights, "%s%s", strings[i], strings[i]);
        char what[64];
        snprintf(what, sizeof what, "string %zu", i);
        expect_round_trip(&c, what);
    }

    /* random numeric values within the documented ranges (property test over the writer's float format) */
    dc_rng r = dc_rng_make(dc_rng_key(12345, 99, 0, 0));
    for (int it = 0; it < 200; it++) {
        dc_config_defaults(&c);
        dc_training_opt *t = &c.training_opt;
        REQUIRE(dc_config_set(&c, "training_opt.dataset=list") == DC_OK);
        REQUIRE(dc_config_set(&c, "training_opt.train_list=train.txt") == DC_OK);
        t->seed = dc_rng_u64(&r);
        t->batch_size = 1 + (int)dc_rng_below(&r, 4096);
        t->num_epochs = 50 + (int)dc_rng_below(&r, 400); /* above the largest milestone below */
        t->max_steps = (int64_t)(dc_rng_u64(&r) >> 1);
        t->imb_factor = 1.0 + dc_rng_uniform_d(&r) * 1000.0;
        t->step_minor_frac = 0.001 + 0.998 * dc_rng_uniform_d(&r);
        t->in_channels = 1 + (int)dc_rng_below(&r, 4);
        for (int ch = 0; ch < t->in_channels; ch++) {
            t->mean[ch] = dc_rng_uniform(&r) * 2.0f - 0.5f;
            t->std[ch] = 1e-3f + dc_rng_uniform(&r);
        }
        for (int ch = t->in_channels; ch < DC_MAX_CHANNELS; ch++) t->mean[ch] = t->std[ch] = 0.0f;
        t->color_jitter = dc_rng_uniform(&r);
        t->sampler.type = (dc_sampler_type)dc_rng_below(&r, 4);
        t->sampler.q = dc_rng_uniform_d(&r);
        t->imb_type = (dc_imb_type)dc_rng_below(&r, 3);
        t->augment = (dc_aug_type)dc_rng_below(&r, 3);
        t->hflip = (int)dc_rng_below(&r, 2);
        c.feat_model.optim.lr = dc_rng_uniform(&r) * (dc_rng_below(&r, 2) ? 1.0f : 1e-6f);
        c.feat_model.optim.weight_decay = dc_rng_uniform(&r) * 1e-3f;
        c.classifier.optim.momentum = dc_rng_uniform(&r);
        c.classifier.head = (dc_head_type)dc_rng_below(&r, 2);
        c.optimizer.loss_logit_adjust_tau = dc_rng_uniform(&r) * 2.0f;
        c.endlr = dc_rng_uniform_d(&r) * 1e-3;
        c.scheduler.type = (dc_sched_type)dc_rng_below(&r, 3);
        c.scheduler.warmup_start = 1e-9 + dc_rng_uniform_d(&r) * (1 - 1e-9);
        c.scheduler.gamma = 1e-9 + dc_rng_uniform_d(&r) * (1 - 1e-9);
        c.scheduler.num_milestones = (int)dc_rng_below(&r, DC_MAX_MILESTONES + 1);
        for (int m = 0; m < c.scheduler.num_milestones; m++) c.scheduler.milestones[m] = 1 + 3 * m;
        char what[64];
        snprintf(what, sizeof what, "random config %d", it);
        EXPECTF(dc_config_validate(&c) == DC_OK, "%s: %s", what, dc_last_error());
        expect_round_trip(&c, what);
        if (tu_failures > 20) break;
    }
}

static void test_hash(void) {
    dc_config a, b;
    dc_config_defaults(&a);
    dc_config_defaults(&b);
    const uint64_t h = dc_config_hash(&a);
    EXPECT(h != 0 && h == dc_config_hash(&b));
    /* keys that change results change the hash */
    static const char *const hashed[] = {"seed=1",
                                         "training_opt.batch_size=64",
                                         "training_opt.sampler.q=0.25",
                                         "networks.classifier.optim_params.lr=0.2",
                                         "training_opt.mean=[0.3]",
                                         "scheduler.per_step=true",
                                         "init_weights=x.safetensors"};
    for (size_t i = 0; i < sizeof hashed / sizeof hashed[0]; i++) {
        dc_config_defaults(&b);
        REQUIRE(dc_config_set(&b, hashed[i]) == DC_OK);
        EXPECTF(dc_config_hash(&b) != h, "hash ignores %s", hashed[i]);
    }
    /* outputs and logging do not */
    static const char *const unhashed[] = {
        "training_opt.log_dir=elsewhere", "training_opt.display_step=7", "training_opt.max_steps=100",
        "training_opt.decode_threads=3",  "save_weights=w.safetensors",  "training_opt.data_root=/mnt/data"};
    for (size_t i = 0; i < sizeof unhashed / sizeof unhashed[0]; i++) {
        dc_config_defaults(&b);
        REQUIRE(dc_config_set(&b, unhashed[i]) == DC_OK);
        EXPECTF(dc_config_hash(&b) == h, "hash depends on %s", unhashed[i]);
    }
    /* source_path is not part of the config */
    snprintf(b.source_path, sizeof b.source_path, "some/file.yaml");
    dc_config_defaults(&b);
    snprintf(b.source_path, sizeof b.source_path, "other.yaml");
    EXPECT(dc_config_hash(&b) == h);
}

static void test_validate(void) {
    static const struct {
        const char *set1, *set2, *frag;
    } cases[] = {
        {"networks.classifier.params.feat_dim=512", NULL, "feat_dim: 512, but resnet20 has 64-d"},
        {"training_opt.dataset=cifar10", NULL, "training_opt.in_channels"},
        {"training_opt.num_classes=7", NULL, "training_opt.num_classes: fashion_mnist has 10"},
        {"training_opt.dataset=list", NULL, "training_opt.train_list"},
        {"scheduler.milestones=[30, 20]", NULL, "strictly increasing"},
        {"scheduler.type=multistep", "scheduler.milestones=[1, 2]", "scheduler.milestones: 2 is not below"},
        {"training_opt.resize_size=16", NULL, "resize_size: 16 is smaller"},
        {"scheduler.warmup_epochs=3", NULL, "warmup_epochs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        dc_config c;
        dc_config_defaults(&c);
        REQUIRE(dc_config_set(&c, cases[i].set1) == DC_OK);
        if (cases[i].set2) REQUIRE(dc_config_set(&c, cases[i].set2) == DC_OK);
        EXPECTF(dc_config_validate(&c) == DC_FAIL && strstr(dc_last_error(), cases[i].frag), "case %zu: %s",
                i, dc_last_error());
    }
    /* fields edited by code are range-checked too, with the file name */
    dc_config c;
    dc_config_defaults(&c);
    REQUIRE(dc_config_load(&c, DC_FIXTURES "/config_native_cifar10_lt.yaml") == DC_OK);
    c.training_opt.batch_size = 0;
    EXPECT(dc_config_validate(&c) == DC_FAIL && strstr(dc_last_error(), "config_native_cifar10_lt.yaml") &&
           strstr(dc_last_error(), "training_opt.batch_size"));
    dc_config_defaults(&c);
    c.training_opt.mean[2] = 0.5f;
    EXPECT(dc_config_validate(&c) == DC_FAIL && strstr(dc_last_error(), "more values than in_channels"));
    dc_config_defaults(&c);
    c.scheduler.type = (dc_sched_type)7;
    EXPECT(dc_config_validate(&c) == DC_FAIL && strstr(dc_last_error(), "scheduler.type"));
    dc_config_defaults(&c);
    snprintf(c.feat_model.arch, sizeof c.feat_model.arch, "vgg16");
    EXPECT(dc_config_validate(&c) == DC_FAIL && strstr(dc_last_error(), "networks.feat_model.arch"));
    dc_config_defaults(&c);
    c.feat_model.optim.lr = NAN;
    EXPECT(dc_config_validate(&c) == DC_FAIL &&
           strstr(dc_last_error(), "networks.feat_model.optim_params.lr"));
}

/* docs/CONFIG.md: every key appears, and the generated tables are current. DC_REGEN_DOCS=1 rewrites them. */
static void test_docs(void) {
    static const char begin[] = "<!-- BEGIN KEY TABLES: generated by dc_config_describe(); "
                                "DC_REGEN_DOCS=1 ./test_config rewrites them -->\n";
    static const char end[] = "<!-- END KEY TABLES -->";
    const char *path = DC_SOURCE_DIR "/docs/CONFIG.md";
    char *doc = read_all(path, NULL);
    EXPECTF(doc != NULL, "cannot read %s", path);
    if (!doc) return;

    char *gen = NULL;
    size_t gen_len = 0;
    FILE *f = open_memstream(&gen, &gen_len);
    REQUIRE(f && dc_config_describe(f) == DC_OK);
    fclose(f);

    for (int i = 0; dc_config_key_path(i); i++) {
        char quoted[300];
        snprintf(quoted, sizeof quoted, "`%s`", dc_config_key_path(i));
        EXPECTF(strstr(doc, quoted) != NULL, "docs/CONFIG.md does not mention %s", quoted);
        EXPECTF(strstr(gen, quoted) != NULL, "dc_config_describe() does not list %s", quoted);
    }

    char *b = strstr(doc, begin), *e = b ? strstr(b, end) : NULL;
    EXPECTF(b && e, "docs/CONFIG.md lacks the generated-table markers");
    if (b && e) {
        b += strlen(begin);
        int current = (size_t)(e - b) == gen_len && memcmp(b, gen, gen_len) == 0;
        if (!current && getenv("DC_REGEN_DOCS")) {
            FILE *o = fopen(path, "wb");
            REQUIRE(o);
            fwrite(doc, 1, (size_t)(b - doc), o);
            fwrite(gen, 1, gen_len, o);
            fputs(e, o);
            fclose(o);
            printf("rewrote the key tables of %s\n", path);
        } else {
            EXPECTF(current, "docs/CONFIG.md key tables are stale: run DC_REGEN_DOCS=1 ./test_config");
        }
    }
    free(gen);
    free(doc);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dc_test_config_XXXXXX");
    REQUIRE(mkdtemp(tmpdir) != NULL);

    test_defaults();
    test_reference_inat();
    test_reference_lws();
    test_native();
    test_reference_mappings();
    test_errors();
    test_set();
    test_round_trip();
    test_hash();
    test_validate();
    test_docs();

    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return tu_finish("test_config");
}
