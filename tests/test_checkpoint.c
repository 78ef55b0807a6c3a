/*
 * test_checkpoint.c: training checkpoints (dist/checkpoint.h).
 *
 *  - round trip: a resnet8 (16x16) trained 2 steps is saved, every slab is overwritten, and the load restores
 *    params, BN buffers, counters, momentum, the optimizer step, extras, per-rank BN rows and every
 *    dc_train_state field bit for bit. The files are checked independently of the reader: the per-tensor
 *    "crc32.<name>" values and the DONE marker's sizes and CRCs are recomputed here with zlib, and the model
 *    file loads with the plain safetensors loader (as PyTorch users would).
 *  - resume: 6 steps straight == 3 steps + checkpoint + a fresh net and optimizer + load + 3 steps, bitwise;
 *    the same resume without the optimizer step count is shown to differ (the comparison can fail).
 *  - find_latest: skips a checkpoint without DONE, with a truncated model file, with a flipped byte in a
 *    tensor (the message names the tensor) or in the header, with a garbage marker, with a missing file;
 *    leftover .tmp files are reported; no directory -> DC_CKPT_NONE; a file in the way -> DC_FAIL.
 *  - pruning: keep-last-K, leftovers of interrupted writes removed, unrelated files kept, an abandoned newer
 *    timeline removed.
 *  - bad metadata (non-numeric step, newer format, inconsistent epoch, missing CRC key), a changed config
 *    hash (DC_CKPT_CONFIG_CHANGED, "config changed since the checkpoint", net untouched), another stage,
 *    another architecture or class count (the mismatches are listed, net untouched).
 *  - failures while writing: "disk full" (RLIMIT_FSIZE -> EFBIG) in the model or in the state file,
 * permission denied (as an unprivileged child when run as root), a file in the way: the message names the
 * path, no file of the failed step is left, and the previous checkpoint is still found and loads.
 */
#include "core/check.h"
#include "core/layers.h"
#include "core/net.h"
#include "core/optim.h"
#include "core/rng.h"
#include "core/safetensors.h"
#include "dist/checkpoint.h"
#include "tests/testutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#define N_BATCH   4
#define N_CLASSES 10
#define IMG       16

static char tmp_root[256];

static int contains(const char *haystack, const char *needle) {
    return strstr(haystack, needle) != NULL;
}

static void make_dir_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", tmp_root, name);
}

static int file_exists(const char *dir, const char *name) {
    char p[600];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return access(p, F_OK) == 0;
}

static int count_entries(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return -1;
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..")) n++;
    closedir(d);
    return n;
}

static void spit(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f != NULL);
    REQUIRE(fwrite(data, 1, len, f) == len);
    fclose(f);
}

static char *ckpt_file(char *buf, size_t cap, const char *dir, const char *kind, int64_t step) {
    REQUIRE(dc_ckpt_path(buf, cap, dir, kind, step) == DC_OK);
    return buf;
}

/* ---- a tiny training run ------------------------------------------------------------------------------- */

typedef struct {
    dc_net *net;
    dc_sgd sgd;
    float *x, *dlogits;
    int32_t *y;
} trainer;

static void trainer_init(trainer *t, const char *arch, int num_classes, uint64_t init_seed) {
    dc_net_desc d = {
        .in_channels = 3, .num_classes = num_classes, .image_h = IMG, .image_w = IMG, .max_batch = N_BATCH};
    snprintf(d.arch, sizeof d.arch, "%s", arch);
    REQUIRE(dc_net_create(&d, &t->net) == DC_OK);
    dc_net_init(t->net, init_seed);
    REQUIRE(dc_sgd_create(&t->sgd, t->net, 0.1f, 0.9f, 5e-4f, 0.05f, 0.9f, 5e-4f, 1, 0) == DC_OK);
    t->x = malloc(sizeof(float) * N_BATCH * 3 * IMG * IMG);
    t->dlogits = malloc(sizeof(float) * N_BATCH * (size_t)num_classes);
    t->y = malloc(sizeof(int32_t) * N_BATCH);
    REQUIRE(t->x && t->dlogits && t->y);
}

static void trainer_free(trainer *t) {
    dc_sgd_free(&t->sgd);
    dc_net_free(t->net);
    free(t->x);
    free(t->dlogits);
    free(t->y);
}

/* One SGD step on batch `step`: the data and the lr are pure functions of the step, as in the trainer. */
static void train_step(trainer *t, int64_t step) {
    dc_rng r = dc_rng_make(dc_rng_key(1234, DC_RNG_SAMPLER, (uint64_t)step, 0));
    for (int i = 0; i < N_BATCH * 3 * IMG * IMG; i++) t->x[i] = (float)dc_rng_normal(&r);
    for (int i = 0; i < N_BATCH; i++) t->y[i] = (int32_t)dc_rng_below(&r, (uint64_t)t->net->desc.num_classes);
    dc_net_zero_grad(t->net);
    dc_net_forward(t->net, t->x, N_BATCH, 1);
    dc_softmax_ce(N_BATCH, t->net->desc.num_classes, t->net->logits, t->y, NULL, 1.0f / N_BATCH, t->dlogits);
    dc_net_backward(t->net, t->dlogits, N_BATCH, 0);
    const double lr[2] = {0.1 / (1.0 + (double)step), 0.05};
    dc_sgd_step(&t->sgd, t->net->params, t->net->grads, lr);
}

static dc_train_state make_state(int64_t step) {
    dc_train_state s;
    memset(&s, 0, sizeof s);
    s.step = step;
    s.steps_per_epoch = 4;
    s.epoch = step / 4;
    s.step_in_epoch = step % 4;
    s.seed = 0xfedcba9876543210ull;
    s.config_hash = 0x0123456789abcdefull;
    s.world_size = 2;
    s.train_seconds = 12.375;
    snprintf(s.stage, sizeof s.stage, "stage1");
    return s;
}

/* A snapshot of everything a checkpoint must restore. */
typedef struct {
    float *params, *buffers, *momentum;
    int64_t *counters;
    int64_t opt_step;
} snapshot;

static snapshot take(const trainer *t) {
    snapshot s;
    const dc_net *n = t->net;
    s.params = malloc(n->n_params * 4);
    s.buffers = malloc(n->n_buffers * 4 + 4);
    s.momentum = malloc(n->n_params * 4);
    s.counters = malloc((size_t)n->n_counters * 8 + 8);
    memcpy(s.params, n->params, n->n_params * 4);
    memcpy(s.buffers, n->buffers, n->n_buffers * 4);
    memcpy(s.momentum, t->sgd.momentum_buf, n->n_params * 4);
    memcpy(s.counters, n->counters, (size_t)n->n_counters * 8);
    s.opt_step = t->sgd.step;
    return s;
}

static int same_as(const snapshot *s, const trainer *t) {
    const dc_net *n = t->net;
    return memcmp(s->params, n->params, n->n_params * 4) == 0 &&
           memcmp(s->buffers, n->buffers, n->n_buffers * 4) == 0 &&
           memcmp(s->momentum, t->sgd.momentum_buf, n->n_params * 4) == 0 &&
           memcmp(s->counters, n->counters, (size_t)n->n_counters * 8) == 0 && s->opt_step == t->sgd.step;
}

static void snapshot_free(snapshot *s) {
    free(s->params);
    free(s->buffers);
    free(s->momentum);
    free(s->counters);
}

/* Overwrites every slab, so a load that forgets something is caught. */
static void perturb(trainer *t) {
    dc_net *n = t->net;
    for (size_t i = 0; i < n->n_params; i++) n->params[i] = 1e6f, t->sgd.momentum_buf[i] = -7.0f;
    for (size_t i = 0; i < n->n_buffers; i++) n->buffers[i] = 42.0f;
    for (int i = 0; i < n->n_counters; i++) n->counters[i] = -5;
    t->sgd.step = 9999;
}

static void print_warnings(const dc_ckpt_warnings *w) {
    for (int i = 0; i < w->n; i++) printf("  warning: %s\n", w->line[i]);
}

static int warnings_contain(const dc_ckpt_warnings *w, const char *a, const char *b) {
    for (int i = 0; i < w->n; i++)
        if (contains(w->line[i], a) && (!b || contains(w->line[i], b))) return 1;
    return 0;
}

/* size and zlib crc32 of a file, computed here independently of checkpoint.c */
static void file_size_crc(const char *path, uint64_t *size, uint32_t *crc) {
    size_t n = 0;
    uint8_t *b = tu_slurp(path, &n);
    REQUIRE(b != NULL);
    *size = n;
    *crc = (uint32_t)crc32(crc32(0L, Z_NULL, 0), b, (uInt)n);
    free(b);
}

/* Writes DONE_<step> by hand (the documented format), for files edited by the tests. */
static void write_marker_by_hand(const char *dir, int64_t step) {
    char model[600], state[600], done[600], text[600];
    uint64_t ms, ss;
    uint32_t mc, sc;
    file_size_crc(ckpt_file(model, sizeof model, dir, "model", step), &ms, &mc);
    file_size_crc(ckpt_file(state, sizeof state, dir, "state", step), &ss, &sc);
    snprintf(text, sizeof text,
             "decouple checkpoint marker v1\nstep %" PRId64 "\nmodel_%08" PRId64 ".safetensors size %" PRIu64
             " crc32 %08" PRIx32 "\nstate_%08" PRId64 ".safetensors size %" PRIu64 " crc32 %08" PRIx32 "\n",
             step, step, ms, mc, step, ss, sc);
    spit(ckpt_file(done, sizeof done, dir, "DONE", step), text, strlen(text));
}

/* Rewrites a checkpoint file with one metadata entry replaced (value NULL: removed), keeping the tensors,
 * then re-marks the checkpoint so only the metadata is wrong. */
static void rewrite_meta(const char *dir, const char *kind, int64_t step, const char *key,
                         const char *value) {
    char path[600];
    ckpt_file(path, sizeof path, dir, kind, step);
    dc_st_file f;
    REQUIRE(dc_st_read(path, &f) == DC_OK);
    dc_tensor *ts = calloc((size_t)f.n_entries + 1, sizeof *ts);
    for (int i = 0; i < f.n_entries; i++) {
        dc_st_entry *e = &f.entries[i];
        snprintf(ts[i].name, sizeof ts[i].name, "%s", e->name);
        ts[i].dtype = e->dtype;
        ts[i].ndim = e->ndim;
        memcpy(ts[i].shape, e->shape, sizeof e->shape);
        dc_tensor_set_contiguous(&ts[i]);
        ts[i].data = f.data + e->begin;
    }
    const char **keys = calloc((size_t)f.n_meta + 1, sizeof *keys),
               **vals = calloc((size_t)f.n_meta + 1, sizeof *vals);
    int n = 0, found = 0;
    for (int i = 0; i < f.n_meta; i++) {
        if (strcmp(f.meta_keys[i], key) == 0) {
            found = 1;
            if (!value) continue;
            keys[n] = key, vals[n++] = value;
        } else {
            keys[n] = f.meta_keys[i], vals[n++] = f.meta_values[i];
        }
    }
    if (!found && value) keys[n] = key, vals[n++] = value; /* re-adds a removed key */
    REQUIRE(found || value);
    REQUIRE(dc_safetensors_write(path, ts, f.n_entries, keys, vals, n) == DC_OK);
    free(keys);
    free(vals);
    free(ts);
    dc_st_free(&f);
    write_marker_by_hand(dir, step);
}

/* ---- round trip ---------------------------------------------------------------------------------------- */

static void test_round_trip(void) {
    char dir[300];
    make_dir_path(dir, sizeof dir, "round_trip/checkpoints"); /* parents are created */
    trainer t;
    trainer_init(&t, "resnet8", N_CLASSES, 5);
    train_step(&t, 0);
    train_step(&t, 1);
    REQUIRE(t.sgd.step == 2 && t.net->counters[0] == 2);

    /* extra state (as LWS keeps its scales outside the net) and per-rank BN rows for 2 ranks */
    float scales[N_CLASSES];
    int64_t extra_counter = 77;
    for (int i = 0; i < N_CLASSES; i++) scales[i] = 1.0f + 0.01f * (float)i;
    dc_tensor extra[2];
    memset(extra, 0, sizeof extra);
    snprintf(extra[0].name, sizeof extra[0].name, "lws.scales");
    extra[0].dtype = DC_F32, extra[0].ndim = 1, extra[0].shape[0] = N_CLASSES, extra[0].data = scales;
    snprintf(extra[1].name, sizeof extra[1].name, "lws.updates");
    extra[1].dtype = DC_I64, extra[1].ndim = 0, extra[1].data = &extra_counter;
    dc_tensor_set_contiguous(&extra[0]);
    dc_tensor_set_contiguous(&extra[1]);
    const size_t nb = t.net->n_buffers;
    float *rank_buffers = malloc(2 * nb * sizeof(float));
    memcpy(rank_buffers, t.net->buffers, nb * sizeof(float));
    for (size_t i = 0; i < nb; i++) rank_buffers[nb + i] = t.net->buffers[i] + 0.5f;
    dc_ckpt_extra ex = {extra, 2, rank_buffers, 2};

    dc_train_state s = make_state(2);
    dc_ckpt_warnings w;
    dc_ckpt_warnings_clear(&w);
    dc_clear_error();
    REQUIRE(dc_ckpt_save(dir, t.net, &t.sgd, &s, &ex, 3, &w) == DC_OK);
    EXPECT(w.n == 0);
    snapshot before = take(&t);

    /* the marker records the files' sizes and CRC32s (recomputed here) */
    char model[600], state[600], done[600];
    ckpt_file(model, sizeof model, dir, "model", 2);
    ckpt_file(state, sizeof state, dir, "state", 2);
    ckpt_file(done, sizeof done, dir, "DONE", 2);
    EXPECT(contains(model, "/model_00000002.safetensors"));
    {
        uint64_t ms, ss;
        uint32_t mc, sc;
        file_size_crc(model, &ms, &mc);
        file_size_crc(state, &ss, &sc);
        char expect[600];
        snprintf(expect, sizeof expect,
                 "decouple checkpoint marker v1\nstep 2\nmodel_00000002.safetensors size %" PRIu64
                 " crc32 %08" PRIx32 "\nstate_00000002.safetensors size %" PRIu64 " crc32 %08" PRIx32 "\n",
                 ms, mc, ss, sc);
        size_t n = 0;
        char *text = (char *)tu_slurp(done, &n);
        REQUIRE(text != NULL);
        EXPECTF(n == strlen(expect) && memcmp(text, expect, n) == 0, "marker:\n%.*s\nexpected:\n%s", (int)n,
                text, expect);
        free(text);
    }

    /* the model file: plain weights for the safetensors loader; per-tensor CRCs are zlib crc32 of the data */
    {
        trainer plain;
        trainer_init(&plain, "resnet8", N_CLASSES, 99);
        EXPECT(dc_safetensors_load(model, plain.net->tensors, plain.net->n_tensors, 0) == DC_OK);
        EXPECT(memcmp(plain.net->params, t.net->params, t.net->n_params * 4) == 0);
        trainer_free(&plain);
        dc_st_file f;
        REQUIRE(dc_st_read(model, &f) == DC_OK);
        int crc_ok = 0;
        for (int i = 0; i < t.net->n_tensors; i++) {
            const dc_tensor *tt = &t.net->tensors[i];
            char key[128], hex[16];
            snprintf(key, sizeof key, "crc32.%s", tt->name);
            uLong c = crc32(crc32(0L, Z_NULL, 0), tt->data,
                            (uInt)(dc_tensor_numel(tt) * (tt->dtype == DC_I64 ? 8 : 4)));
            snprintf(hex, sizeof hex, "%08lx", c);
            const char *v = dc_st_meta(&f, key);
            crc_ok += v && strcmp(v, hex) == 0;
        }
        EXPECT(crc_ok == t.net->n_tensors);
        EXPECT(dc_st_meta(&f, "format") && strcmp(dc_st_meta(&f, "format"), "pt") == 0);
        dc_st_free(&f);
        /* the state file: momentum per parameter, at the parameter's slab offset */
        REQUIRE(dc_st_read(state, &f) == DC_OK);
        dc_tensor *w1 = dc_net_find(t.net, "layer2.0.conv1.weight");
        REQUIRE(w1 != NULL);
        const dc_st_entry *e = dc_st_find(&f, "optimizer.momentum.layer2.0.conv1.weight");
        REQUIRE(e != NULL);
        size_t off = (size_t)((float *)w1->data - t.net->params);
        EXPECT(e->end - e->begin == (uint64_t)dc_tensor_numel(w1) * 4);
        EXPECT(memcmp(f.data + e->begin, t.sgd.momentum_buf + off, e->end - e->begin) == 0);
        EXPECT(dc_st_find(&f, "extra.lws.scales") && dc_st_find(&f, "rank_buffers"));
        EXPECT(dc_st_meta(&f, "config_hash") &&
               strcmp(dc_st_meta(&f, "config_hash"), "0123456789abcdef") == 0);
        dc_st_free(&f);
    }

    /* overwrite everything, load, compare bit for bit */
    perturb(&t);
    for (int i = 0; i < N_CLASSES; i++) scales[i] = 0;
    extra_counter = 0;
    dc_ckpt_load_opts opts = {.check_config_hash = 1,
                              .config_hash = s.config_hash,
                              .stage = "stage1",
                              .rank = 0,
                              .world = 2,
                              .extra = extra,
                              .n_extra = 2};
    dc_train_state got;
    memset(&got, 0xab, sizeof got);
    dc_ckpt_warnings_clear(&w);
    REQUIRE(dc_ckpt_load(dir, 2, t.net, &t.sgd, &opts, &got, &w) == DC_OK);
    EXPECT(same_as(&before, &t));
    EXPECT(w.n == 0);
    int scales_ok = 1;
    for (int i = 0; i < N_CLASSES; i++) scales_ok &= scales[i] == 1.0f + 0.01f * (float)i;
    EXPECT(scales_ok && extra_counter == 77);
    EXPECT(got.step == 2 && got.epoch == 0 && got.step_in_epoch == 2 && got.steps_per_epoch == 4);
    EXPECT(got.seed == s.seed && got.config_hash == s.config_hash && got.world_size == 2);
    EXPECT(strcmp(got.stage, "stage1") == 0 && got.train_seconds == 12.375);
    EXPECT(got.optimizer_step == 2 && strcmp(got.arch, "resnet8") == 0 && got.num_classes == N_CLASSES);
    EXPECT(got.n_params == (int64_t)t.net->n_params);

    dc_train_state only;
    EXPECT(dc_ckpt_read_state(dir, 2, &only) == DC_OK && only.step == 2 && only.config_hash == s.config_hash);

    /* rank 1 gets its own BN row; a different world size falls back to rank 0's with a warning */
    opts.rank = 1;
    REQUIRE(dc_ckpt_load(dir, 2, t.net, &t.sgd, &opts, &got, &w) == DC_OK);
    EXPECT(memcmp(t.net->buffers, rank_buffers + nb, nb * 4) == 0);
    EXPECT(memcmp(t.net->params, before.params, t.net->n_params * 4) == 0);
    opts.rank = 1, opts.world = 3;
    dc_ckpt_warnings_clear(&w);
    REQUIRE(dc_ckpt_load(dir, 2, t.net, &t.sgd, &opts, &got, &w) == DC_OK);
    EXPECT(memcmp(t.net->buffers, before.buffers, nb * 4) == 0);
    EXPECTF(w.n == 1 && warnings_contain(&w, "2 ranks", "3"), "%d warnings", w.n);

    /* extras asked for but of another shape: listed, nothing modified */
    extra[0].shape[0] = N_CLASSES + 1;
    dc_tensor_set_contiguous(&extra[0]);
    perturb(&t);
    snapshot perturbed = take(&t);
    dc_clear_error();
    EXPECT(dc_ckpt_load(dir, 2, t.net, &t.sgd, &opts, &got, &w) == DC_FAIL);
    EXPECTF(contains(dc_last_error(), state) && contains(dc_last_error(), "extra.lws.scales") &&
                contains(dc_last_error(), "[10]"),
            "%s", dc_last_error());
    EXPECT(same_as(&perturbed, &t));

    /* --resume PATH */
    char rdir[600];
    int64_t rstep = -1;
    EXPECT(dc_ckpt_resolve(done, rdir, sizeof rdir, &rstep, NULL) == DC_OK && rstep == 2 &&
           strcmp(rdir, dir) == 0);
    rstep = -1;
    EXPECT(dc_ckpt_resolve(dir, rdir, sizeof rdir, &rstep, NULL) == DC_OK && rstep == 2);
    EXPECT(dc_ckpt_resolve(tmp_root, rdir, sizeof rdir, &rstep, NULL) == DC_CKPT_NONE);
    char bogus[600];
    snprintf(bogus, sizeof bogus, "%s/bogus.bin", tmp_root);
    spit(bogus, "x", 1);
    dc_clear_error();
    EXPECT(dc_ckpt_resolve(bogus, rdir, sizeof rdir, &rstep, NULL) == DC_FAIL);
    EXPECTF(contains(dc_last_error(), bogus) && contains(dc_last_error(), "not a checkpoint"), "%s",
            dc_last_error());
    unlink(bogus);

    /* bad arguments */
    dc_train_state bad = make_state(3);
    snprintf(bad.stage, sizeof bad.stage, "stage9");
    dc_clear_error();
    EXPECT(dc_ckpt_write(dir, t.net, &t.sgd, &bad, NULL) == DC_FAIL && contains(dc_last_error(), "stage"));
    bad = make_state(3);
    bad.world_size = 3; /* rank_buffers has 2 rows */
    dc_clear_error();
    EXPECT(dc_ckpt_write(dir, t.net, &t.sgd, &bad, &ex) == DC_FAIL && contains(dc_last_error(), "2 ranks"));
    EXPECT(!file_exists(dir, "model_00000003.safetensors"));
    bad = make_state(-1);
    EXPECT(dc_ckpt_write(dir, t.net, &t.sgd, &bad, NULL) == DC_FAIL && contains(dc_last_error(), "negative"));

    snapshot_free(&before);
    snapshot_free(&perturbed);
    free(rank_buffers);
    trainer_free(&t);
}

/* ---- resume is bit-identical --------------------------------------------------------------------------- */

static void test_resume_bit_identical(void) {
    char dir[300];
    make_dir_path(dir, sizeof dir, "resume");
    trainer straight;
    trainer_init(&straight, "resnet8", N_CLASSES, 11);
    for (int64_t s = 0; s < 6; s++) train_step(&straight, s);
    snapshot ref = take(&straight);
    trainer_free(&straight);

    trainer first;
    trainer_init(&first, "resnet8", N_CLASSES, 11);
    for (int64_t s = 0; s < 3; s++) train_step(&first, s);
    dc_train_state st = make_state(3);
    REQUIRE(dc_ckpt_save(dir, first.net, &first.sgd, &st, NULL, 2, NULL) == DC_OK);
    trainer_free(&first);

    /* a fresh process: different init, fresh optimizer; find the checkpoint, load, continue */
    trainer resumed;
    trainer_init(&resumed, "resnet8", N_CLASSES, 999);
    int64_t step = -1;
    dc_ckpt_warnings w;
    dc_ckpt_warnings_clear(&w);
    REQUIRE(dc_ckpt_find_latest(dir, &step, &w) == DC_OK);
    EXPECT(step == 3 && w.n == 0);
    dc_train_state got;
    REQUIRE(dc_ckpt_load(dir, step, resumed.net, &resumed.sgd, NULL, &got, NULL) == DC_OK);
    for (int64_t s = got.step; s < 6; s++) train_step(&resumed, s);
    EXPECTF(same_as(&ref, &resumed), "resumed run differs from the straight run");

    /* the comparison can fail: the same resume with the optimizer's step count lost (momentum re-initialised
     * on the next update) ends elsewhere */
    trainer lossy;
    trainer_init(&lossy, "resnet8", N_CLASSES, 999);
    REQUIRE(dc_ckpt_load(dir, 3, lossy.net, &lossy.sgd, NULL, &got, NULL) == DC_OK);
    lossy.sgd.step = 0;
    for (int64_t s = 3; s < 6; s++) train_step(&lossy, s);
    lossy.sgd.step = ref.opt_step;
    EXPECT(memcmp(ref.params, lossy.net->params, lossy.net->n_params * 4) != 0);
    trainer_free(&lossy);

    snapshot_free(&ref);
    trainer_free(&resumed);
}

/* ---- find_latest --------------------------------------------------------------------------------------- */

/* Flips one byte at `offset` (negative: from the end of the header, i.e. inside the JSON). */
static void flip_byte(const char *path, uint64_t offset) {
    size_t n = 0;
    uint8_t *b = tu_slurp(path, &n);
    REQUIRE(b && offset < n);
    b[offset] ^= 0x01;
    spit(path, b, n);
    free(b);
}

/* Byte offset in the file of the first byte of tensor `name`'s data. */
static uint64_t tensor_file_offset(const char *path, const char *name) {
    dc_st_file f;
    REQUIRE(dc_st_read(path, &f) == DC_OK);
    const dc_st_entry *e = dc_st_find(&f, name);
    REQUIRE(e != NULL);
    size_t n = 0;
    uint8_t *b = tu_slurp(path, &n);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = (hlen << 8) | b[i];
    free(b);
    uint64_t off = 8 + hlen + e->begin;
    dc_st_free(&f);
    return off;
}

static void test_find_latest(void) {
    char dir[300], path[600];
    make_dir_path(dir, sizeof dir, "latest");
    int64_t step = -1;
    dc_ckpt_warnings w;

    /* no directory, an empty one, a file in the way */
    dc_ckpt_warnings_clear(&w);
    EXPECT(dc_ckpt_find_latest(dir, &step, &w) == DC_CKPT_NONE && w.n == 0);
    REQUIRE(mkdir(dir, 0755) == 0);
    EXPECT(dc_ckpt_find_latest(dir, &step, &w) == DC_CKPT_NONE && w.n == 0);
    char afile[300];
    make_dir_path(afile, sizeof afile, "latest_is_a_file");
    spit(afile, "x", 1);
    dc_clear_error();
    EXPECT(dc_ckpt_find_latest(afile, &step, &w) == DC_FAIL);
    EXPECTF(contains(dc_last_error(), afile), "%s", dc_last_error());
    unlink(afile);

    trainer t;
    trainer_init(&t, "resnet8", N_CLASSES, 3);
    for (int64_t s = 1; s <= 3; s++) {
        train_step(&t, s - 1);
        dc_train_state st = make_state(s);
        REQUIRE(dc_ckpt_save(dir, t.net, &t.sgd, &st, NULL, 0, NULL) == DC_OK);
    }
    snapshot at3 = take(&t);
    EXPECT(dc_ckpt_find_latest(dir, &step, &w) == DC_OK && step == 3);

    /* step 4 written but never committed (killed before DONE), and a leftover temporary file */
    train_step(&t, 3);
    dc_train_state st4 = make_state(4);
    REQUIRE(dc_ckpt_write(dir, t.net, &t.sgd, &st4, NULL) == DC_OK);
    snprintf(path, sizeof path, "%s/state_00000005.safetensors.tmp.12345", dir);
    spit(path, "partial", 7);
    snprintf(path, sizeof path, "%s/model_123.safetensors", dir); /* not our name: ignored silently */
    spit(path, "x", 1);
    dc_ckpt_warnings_clear(&w);
    EXPECT(dc_ckpt_find_latest(dir, &step, &w) == DC_OK && step == 3);
    print_warnings(&w);
    EXPECT(warnings_contain(&w, "model_00000004.safetensors", "no DONE_00000004"));
    EXPECT(warnings_contain(&w, "state_00000004.safetensors", "no DONE_00000004"));
    EXPECT(warnings_contain(&w, "state_00000005.safetensors.tmp.12345", "temporary"));
    EXPECT(!warnings_contain(&w, "model_123", NULL));
    EXPECT(w.n == 3);

    /* truncated model file of step 3 -> back to step 2 */
    ckpt_file(path, sizeof path, dir, "model", 3);
    size_t n = 0;
    uint8_t *orig_model = tu_slurp(path, &n);
    REQUIRE(orig_model != NULL);
    REQUIRE(truncate(path, (off_t)(n - 100)) == 0);
    dc_ckpt_warnings_clear(&w);
    EXPECT(dc_ckpt_find_latest(dir, &step, &w) == DC_OK && step == 2);
    print_warnings(&w);
    EXPECT(warnings_contain(&w, "skipping checkpoint step 3", "model_00000003.safetensors"));
    EXPECT(warnings_contain(&w, "skipping checkpoint step 3", "truncated"));
    spit(path, orig_model, n); /* repaired: step 3 is good again */
    EXPECT(dc_ckpt_find_latest(dir, &step, NULL) == DC_OK && step == 3);

    /* a flipped bit in a tensor of the state file: the CRC message names the tensor */
    char state3[600];
    ckpt_file(state3, sizeof state3, dir, "state", 3);
    const char *victim = "optimizer.momentum.layer2.0.conv1.weight";
    uint64_t off = tensor_file_offset(state3, victim) + 17;
    flip_byte(state3, off);
    dc_ckpt_warnings_clear(&w);
    EXPECT(dc_ckpt_find_latest(dir, &step, &w) == DC_OK && step == 2);
    print_warnings(&w);
    EXPECT(warnings_contain(&w, "state_00000003.safetensors", victim));
    EXPECT(warnings_contain(&w, "skipping checkpoint step 3", "CRC32"));
    dc_clear_error();
    EXPECT(dc_ckpt_load(dir, 3, t.net, &t.sgd, NULL, &st4, NULL) == DC_FAIL);
    EXPECTF(contains(dc_last_error(), state3) && contains(dc_last_error(), victim), "%s", dc_last_error());
    EXPECT(dc_ckpt_verify(dir, 3) == DC_FAIL);
    flip_byte(state3, off);
    EXPECT(dc_ckpt_verify(dir, 3) == DC_OK);

    /* a flipped bit inside the JSON header (a metadata value): every tensor passes, the file CRC does not */
    {
        size_t sn = 0;
        uint8_t *b = tu_slurp(state3, &sn);
        REQUIRE(b != NULL);
        const char *needle = "counter-based";
        uint8_t *hit = NULL;
        for (size_t i = 0; i + strlen(needle) < sn && !hit; i++)
            if (memcmp(b + i, needle, strlen(needle)) == 0) hit = b + i;
        REQUIRE(hit != NULL);
        hit[0] = 'C';
        spit(state3, b, sn);
        dc_clear_error();
        EXPECT(dc_ckpt_verify(dir, 3) == DC_FAIL);
        EXPECTF(contains(dc_last_error(), state3) && contains(dc_last_error(), "header or metadata"), "%s",
                dc_last_error());
        hit[0] = 'c';
        spit(state3, b, sn);
        free(b);
        EXPECT(dc_ckpt_verify(dir, 3) == DC_OK);
    }

    /* the same flipped tensor bit AFTER a (hand-made) marker that matches the damaged file: the whole-file
     * CRC passes, the per-tensor CRC still catches it on load */
    flip_byte(state3, off);
    write_marker_by_hand(dir, 3);
    EXPECT(dc_ckpt_verify(dir, 3) == DC_OK);
    dc_clear_error();
    EXPECT(dc_ckpt_load(dir, 3, t.net, &t.sgd, NULL, &st4, NULL) == DC_FAIL);
    EXPECTF(contains(dc_last_error(), state3) && contains(dc_last_error(), victim) &&
                contains(dc_last_error(), "CRC32"),
            "%s", dc_last_error());
    flip_byte(state3, off);
    write_marker_by_hand(dir, 3);

    /* garbage marker of step 3, model of step 2 gone: only step 1 is complete */
    char done3[600];
    ckpt_file(done3, sizeof done3, dir, "DONE", 3);
    spit(done3, "hello\n", 6);
    ckpt_file(path, sizeof path, dir, "model", 2);
    uint8_t *orig_model2 = tu_slurp(path, &n);
    size_t n_model2 = n;
    unlink(path);
    dc_ckpt_warnings_clear(&w);
    EXPECT(dc_ckpt_find_latest(dir, &step, &w) == DC_OK && step == 1);
    print_warnings(&w);
    EXPECT(warnings_contain(&w, "skipping checkpoint step 3", "DONE_00000003"));
    EXPECT(warnings_contain(&w, "skipping checkpoint step 2", "model_00000002.safetensors: missing"));

    /* nothing complete at all -> DC_CKPT_NONE, with the reasons */
    ckpt_file(path, sizeof path, dir, "state", 1);
    REQUIRE(truncate(path, 10) == 0);
    dc_ckpt_warnings_clear(&w);
    EXPECT(dc_ckpt_find_latest(dir, &step, &w) == DC_CKPT_NONE);
    EXPECT(warnings_contain(&w, "skipping checkpoint step 1", "state_00000001.safetensors"));

    /* restore step 3 for a load: the marker is rewritten from the repaired files */
    ckpt_file(path, sizeof path, dir, "model", 2);
    spit(path, orig_model2, n_model2);
    write_marker_by_hand(dir, 3);
    perturb(&t);
    EXPECT(dc_ckpt_load(dir, 3, t.net, &t.sgd, NULL, &st4, NULL) == DC_OK && same_as(&at3, &t));

    free(orig_model);
    free(orig_model2);
    snapshot_free(&at3);
    trainer_free(&t);
}

/* ---- pruning ------------------------------------------------------------------------------------------- */

static int complete_on_disk(const char *dir, int64_t step) {
    char name[3][64];
    snprintf(name[0], 64, "model_%08" PRId64 ".safetensors", step);
    snprintf(name[1], 64, "state_%08" PRId64 ".safetensors", step);
    snprintf(name[2], 64, "DONE_%08" PRId64, step);
    int c = 0;
    for (int i = 0; i < 3; i++) c += file_exists(dir, name[i]);
    return c; /* 3: complete, 0: gone, else partial */
}

static void test_pruning(void) {
    char dir[300], path[600];
    make_dir_path(dir, sizeof dir, "prune");
    trainer t;
    trainer_init(&t, "resnet8", N_CLASSES, 4);
    dc_ckpt_warnings w;
    for (int64_t s = 1; s <= 5; s++) {
        dc_train_state st = make_state(s);
        dc_ckpt_warnings_clear(&w);
        REQUIRE(dc_ckpt_save(dir, t.net, &t.sgd, &st, NULL, 2, &w) == DC_OK);
        EXPECT(w.n == 0);
        int64_t latest = -1;
        EXPECT(dc_ckpt_find_latest(dir, &latest, NULL) == DC_OK && latest == s);
    }
    EXPECT(complete_on_disk(dir, 1) == 0 && complete_on_disk(dir, 2) == 0 && complete_on_disk(dir, 3) == 0);
    EXPECT(complete_on_disk(dir, 4) == 3 && complete_on_disk(dir, 5) == 3);
    EXPECT(count_entries(dir) == 6);

    /* leftovers of interrupted writes go at the next commit; files that are not ours stay */
    snprintf(path, sizeof path, "%s/model_00000003.safetensors.tmp.999", dir);
    spit(path, "x", 1);
    snprintf(path, sizeof path, "%s/model_00000002.safetensors", dir);
    spit(path, "x", 1);
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    spit(path, "mine", 4);
    dc_train_state st6 = make_state(6);
    dc_ckpt_warnings_clear(&w);
    REQUIRE(dc_ckpt_save(dir, t.net, &t.sgd, &st6, NULL, 2, &w) == DC_OK);
    print_warnings(&w);
    EXPECT(complete_on_disk(dir, 4) == 0 && complete_on_disk(dir, 5) == 3 && complete_on_disk(dir, 6) == 3);
    EXPECT(!file_exists(dir, "model_00000003.safetensors.tmp.999") &&
           !file_exists(dir, "model_00000002.safetensors"));
    EXPECT(file_exists(dir, "notes.txt"));
    EXPECT(warnings_contain(&w, "model_00000003.safetensors.tmp.999", "temporary"));
    EXPECT(warnings_contain(&w, "model_00000002.safetensors", "no DONE"));
    EXPECT(count_entries(dir) == 7);

    /* resumed from step 4 (say), the run writes step 4 again: 5 and 6 belong to an abandoned timeline */
    dc_train_state st4 = make_state(4);
    dc_ckpt_warnings_clear(&w);
    REQUIRE(dc_ckpt_save(dir, t.net, &t.sgd, &st4, NULL, 2, &w) == DC_OK);
    print_warnings(&w);
    EXPECT(complete_on_disk(dir, 4) == 3 && complete_on_disk(dir, 5) == 0 && complete_on_disk(dir, 6) == 0);
    EXPECT(warnings_contain(&w, "removing checkpoint step 5", "newer"));
    EXPECT(warnings_contain(&w, "removing checkpoint step 6", "newer"));
    int64_t latest = -1;
    EXPECT(dc_ckpt_find_latest(dir, &latest, NULL) == DC_OK && latest == 4);

    /* keep_last 1 always leaves exactly the newest; keep_last 0 keeps all */
    for (int64_t s = 5; s <= 7; s++) {
        dc_train_state st = make_state(s);
        REQUIRE(dc_ckpt_save(dir, t.net, &t.sgd, &st, NULL, 1, NULL) == DC_OK);
        EXPECT(complete_on_disk(dir, s) == 3 && complete_on_disk(dir, s - 1) == 0);
    }
    for (int64_t s = 8; s <= 9; s++) {
        dc_train_state st = make_state(s);
        REQUIRE(dc_ckpt_save(dir, t.net, &t.sgd, &st, NULL, 0, NULL) == DC_OK);
    }
    EXPECT(complete_on_disk(dir, 7) == 3 && complete_on_disk(dir, 8) == 3 && complete_on_disk(dir, 9) == 3);

    /* a step beyond 8 digits still sorts numerically */
    dc_train_state big = make_state(123456789);
    REQUIRE(dc_ckpt_save(dir, t.net, &t.sgd, &big, NULL, 0, NULL) == DC_OK);
    EXPECT(file_exists(dir, "DONE_123456789"));
    EXPECT(dc_ckpt_find_latest(dir, &latest, NULL) == DC_OK && latest == 123456789);

    /* an explicit resume from step 8 discards the newer timeline at once */
    snprintf(path, sizeof path, "%s/state_00000010.safetensors", dir); /* an unfinished newer write */
    spit(path, "x", 1);
    dc_ckpt_warnings_clear(&w);
    EXPECT(dc_ckpt_discard_newer(dir, 8, &w) == DC_OK);
    EXPECT(complete_on_disk(dir, 7) == 3 && complete_on_disk(dir, 8) == 3 && complete_on_disk(dir, 9) == 0);
    EXPECT(!file_exists(dir, "DONE_123456789") && !file_exists(dir, "model_123456789.safetensors"));
    EXPECT(!file_exists(dir, "state_00000010.safetensors"));
    EXPECT(w.n == 2 && warnings_contain(&w, "removing checkpoint step 9", "resumed"));
    EXPECT(dc_ckpt_find_latest(dir, &latest, NULL) == DC_OK && latest == 8);
    trainer_free(&t);
}

/* ---- bad metadata, config, stage, architecture --------------------------------------------------------- */

static void expect_load_error(const char *dir, int64_t step, trainer *t, const char *path, const char *a,
                              const char *b, int line) {
    snapshot s = take(t);
    dc_train_state got;
    dc_clear_error();
    int rc = dc_ckpt_load(dir, step, t->net, &t->sgd, NULL, &got, NULL);
    EXPECTF(rc == DC_FAIL, "line %d: rc %d", line, rc);
    EXPECTF(contains(dc_last_error(), path) && contains(dc_last_error(), a) &&
                (!b || contains(dc_last_error(), b)),
            "line %d: %s", line, dc_last_error());
    EXPECTF(same_as(&s, t), "line %d: the failed load modified the net", line);
    snapshot_free(&s);
}

static void test_metadata_and_mismatch(void) {
    char dir[300], state[600], model[600];
    make_dir_path(dir, sizeof dir, "meta");
    trainer t;
    trainer_init(&t, "resnet8", N_CLASSES, 6);
    train_step(&t, 0);
    dc_train_state st = make_state(1);
    REQUIRE(dc_ckpt_save(dir, t.net, &t.sgd, &st, NULL, 0, NULL) == DC_OK);
    ckpt_file(state, sizeof state, dir, "state", 1);
    ckpt_file(model, sizeof model, dir, "model", 1);
    perturb(&t); /* a failed load must leave this untouched */

    /* a changed config: a distinct status and message, the state filled for the caller's message */
    dc_ckpt_load_opts opts = {.check_config_hash = 1, .config_hash = 0x1111, .world = 1};
    snapshot s = take(&t);
    dc_train_state got;
    memset(&got, 0, sizeof got);
    dc_clear_error();
    EXPECT(dc_ckpt_load(dir, 1, t.net, &t.sgd, &opts, &got, NULL) == DC_CKPT_CONFIG_CHANGED);
    EXPECTF(contains(dc_last_error(), "config changed since the checkpoint") &&
                contains(dc_last_error(), state) && contains(dc_last_error(), "0123456789abcdef") &&
                contains(dc_last_error(), "0000000000001111"),
            "%s", dc_last_error());
    EXPECT(got.config_hash == st.config_hash);
    EXPECT(same_as(&s, &t));
    /* another stage */
    opts.check_config_hash = 0;
    opts.stage = "crt";
    dc_clear_error();
    EXPECT(dc_ckpt_load(dir, 1, t.net, &t.sgd, &opts, &got, NULL) == DC_FAIL);
    EXPECTF(contains(dc_last_error(), "stage \"stage1\"") && contains(dc_last_error(), "\"crt\""), "%s",
            dc_last_error());
    EXPECT(same_as(&s, &t));
    snapshot_free(&s);

    /* metadata damaged consistently (the CRCs and the marker match the damaged file) */
    rewrite_meta(dir, "state", 1, "step", "1x");
    expect_load_error(dir, 1, &t, state, "\"step\": expected an integer, got \"1x\"", NULL, __LINE__);
    rewrite_meta(dir, "state", 1, "step", "2");
    expect_load_error(dir, 1, &t, state, "\"step\" is 2 but the file name says 1", NULL, __LINE__);
    rewrite_meta(dir, "state", 1, "step", "1");
    rewrite_meta(dir, "state", 1, "epoch", "3");
    expect_load_error(dir, 1, &t, state, "inconsistent", NULL, __LINE__);
    rewrite_meta(dir, "state", 1, "epoch", "0");
    rewrite_meta(dir, "state", 1, "format_version", "7");
    expect_load_error(dir, 1, &t, state, "newer decouple", NULL, __LINE__);
    rewrite_meta(dir, "state", 1, "format_version", "1");
    rewrite_meta(dir, "state", 1, "config_hash", "12345");
    expect_load_error(dir, 1, &t, state, "\"config_hash\"", "16 lowercase hex", __LINE__);
    rewrite_meta(dir, "state", 1, "config_hash", "0123456789abcdef");
    rewrite_meta(dir, "state", 1, "seed", NULL);
    expect_load_error(dir, 1, &t, state, "no \"seed\"", NULL, __LINE__);
    rewrite_meta(dir, "state", 1, "seed", "18364758544493064720");
    rewrite_meta(dir, "model", 1, "crc32.layer1.0.bn2.running_var", NULL);
    expect_load_error(dir, 1, &t, model, "layer1.0.bn2.running_var", "no CRC32", __LINE__);
    REQUIRE(dc_ckpt_save(dir, t.net, &t.sgd, &st, NULL, 0, NULL) == DC_OK); /* repaired */
    rewrite_meta(dir, "model", 1, "checkpoint", "something-else");
    expect_load_error(dir, 1, &t, model, "\"checkpoint\"", NULL, __LINE__);

    /* another architecture / another class count: every mismatch listed, nothing modified */
    REQUIRE(dc_ckpt_save(dir, t.net, &t.sgd, &st, NULL, 0, NULL) == DC_OK);
    trainer other;
    trainer_init(&other, "resnet20", N_CLASSES, 7);
    expect_load_error(dir, 1, &other, model, "arch 'resnet8', the model is 'resnet20'",
                      "layer1.1.conv1.weight", __LINE__);
    trainer_free(&other);
    trainer_init(&other, "resnet8", 5, 7);
    expect_load_error(dir, 1, &other, model,
                      "fc.weight': shape [10, 64] in the file, the model expects [5, 64]", "fc.bias",
                      __LINE__);
    trainer_free(&other);
    /* a checkpoint saved without an optimizer does not fit a load with one */
    REQUIRE(dc_ckpt_save(dir, t.net, NULL, &st, NULL, 0, NULL) == DC_OK);
    expect_load_error(dir, 1, &t, state, "missing tensor 'optimizer.momentum.conv1.weight'", NULL, __LINE__);
    trainer_free(&t);
}

/* ---- failures while writing ---------------------------------------------------------------------------- */

static void expect_only_previous(const char *dir, int64_t prev, int64_t failed, const snapshot *at_prev,
                                 trainer *t) {
    EXPECT(complete_on_disk(dir, failed) == 0);
    DIR *d = opendir(dir);
    REQUIRE(d != NULL);
    struct dirent *de;
    int tmp = 0;
    while ((de = readdir(d)) != NULL) tmp += strstr(de->d_name, ".tmp.") != NULL;
    closedir(d);
    EXPECT(tmp == 0);
    int64_t latest = -1;
    EXPECT(dc_ckpt_find_latest(dir, &latest, NULL) == DC_OK && latest == prev);
    trainer fresh;
    trainer_init(&fresh, "resnet8", N_CLASSES, 1000);
    dc_train_state got;
    EXPECT(dc_ckpt_load(dir, latest, fresh.net, &fresh.sgd, NULL, &got, NULL) == DC_OK);
    EXPECT(same_as(at_prev, &fresh));
    trainer_free(&fresh);
    (void)t;
}

static void test_write_failures(void) {
    char dir[300];
    make_dir_path(dir, sizeof dir, "fail");
    trainer t;
    trainer_init(&t, "resnet8", N_CLASSES, 8);
    train_step(&t, 0);
    dc_train_state st3 = make_state(3);
    REQUIRE(dc_ckpt_save(dir, t.net, &t.sgd, &st3, NULL, 2, NULL) == DC_OK);
    snapshot at3 = take(&t);
    train_step(&t, 1);
    dc_train_state st6 = make_state(6);
    char model6[600], state6[600];
    ckpt_file(model6, sizeof model6, dir, "model", 6);
    ckpt_file(state6, sizeof state6, dir, "state", 6);
    const size_t model_bytes = t.net->n_params * 4 + t.net->n_buffers * 4;

    /* "disk full": RLIMIT_FSIZE makes write(2) fail with EFBIG (SIGXFSZ ignored), as ENOSPC would */
    struct rlimit old_limit, small;
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    small = old_limit;
    small.rlim_cur = model_bytes / 4; /* the model file does not fit */
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    dc_clear_error();
    EXPECT(dc_ckpt_save(dir, t.net, &t.sgd, &st6, NULL, 2, NULL) == DC_FAIL);
    EXPECTF(contains(dc_last_error(), model6) && contains(dc_last_error(), strerror(EFBIG)) &&
                contains(dc_last_error(), "step 6"),
            "%s", dc_last_error());

    /* the model fits but the state file (with a large extra tensor) does not: the new model goes too */
    size_t big_n = model_bytes; /* floats: 4x the model's bytes */
    float *big = calloc(big_n, sizeof(float));
    dc_tensor extra;
    memset(&extra, 0, sizeof extra);
    snprintf(extra.name, sizeof extra.name, "big");
    extra.dtype = DC_F32, extra.ndim = 1, extra.shape[0] = (int64_t)big_n, extra.data = big;
    dc_tensor_set_contiguous(&extra);
    dc_ckpt_extra ex = {&extra, 1, NULL, 0};
    small.rlim_cur = model_bytes * 2;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    dc_clear_error();
    EXPECT(dc_ckpt_save(dir, t.net, &t.sgd, &st6, &ex, 2, NULL) == DC_FAIL);
    EXPECTF(contains(dc_last_error(), state6) && contains(dc_last_error(), strerror(EFBIG)), "%s",
            dc_last_error());
    REQUIRE(setrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    signal(SIGXFSZ, old_handler);
    free(big);
    expect_only_previous(dir, 3, 6, &at3, &t);

    /* a regular file where the directory should be */
    char blocked[600];
    snprintf(blocked, sizeof blocked, "%s/not_a_dir", tmp_root);
    spit(blocked, "x", 1);
    char inside[700];
    snprintf(inside, sizeof inside, "%s/checkpoints", blocked);
    dc_clear_error();
    EXPECT(dc_ckpt_save(inside, t.net, &t.sgd, &st6, NULL, 2, NULL) == DC_FAIL);
    EXPECTF(contains(dc_last_error(), inside) && contains(dc_last_error(), strerror(ENOTDIR)), "%s",
            dc_last_error());
    unlink(blocked);

    /* permission denied: root ignores directory modes, so an unprivileged child tries the write */
    fflush(stdout);
    fflush(stderr);
    REQUIRE(chmod(tmp_root, 0755) == 0);
    if (geteuid() != 0) REQUIRE(chmod(dir, 0555) == 0);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0)) _exit(77);
        dc_clear_error();
        int rc = dc_ckpt_save(dir, t.net, &t.sgd, &st6, NULL, 2, NULL);
        int ok =
            rc == DC_FAIL && contains(dc_last_error(), dir) && contains(dc_last_error(), strerror(EACCES));
        if (!ok) fprintf(stderr, "permission case: rc %d: %s\n", rc, dc_last_error());
        _exit(ok ? 0 : 1);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    if (geteuid() != 0) chmod(dir, 0755);
    chmod(tmp_root, 0700);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77)
        printf("note: could not drop privileges; permission-denied case skipped\n");
    else
        EXPECTF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    expect_only_previous(dir, 3, 6, &at3, &t);

    /* and after all that, the next save works */
    REQUIRE(dc_ckpt_save(dir, t.net, &t.sgd, &st6, NULL, 2, NULL) == DC_OK);
    snapshot at6 = take(&t);
    int64_t latest = -1;
    EXPECT(dc_ckpt_find_latest(dir, &latest, NULL) == DC_OK && latest == 6);

    /* rewriting step 6 (a final checkpoint right after resuming, say) fails for lack of space: the old step 6
     * stays complete and loadable */
    train_step(&t, 2);
    REQUIRE(signal(SIGXFSZ, SIG_IGN) != SIG_ERR);
    small.rlim_cur =
        model_bytes * 2; /* the new model file fits, the state file with the big extra does not */
    big = calloc(big_n, sizeof(float));
    extra.data = big;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    EXPECT(dc_ckpt_save(dir, t.net, &t.sgd, &st6, &ex, 2, NULL) == DC_FAIL);
    free(big);
    REQUIRE(setrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    signal(SIGXFSZ, old_handler);
    EXPECT(complete_on_disk(dir, 3) == 3);
    expect_only_previous(dir, 6, 7, &at6, &t);
    /* written but not committed: the old marker is gone with the old files, step 6 is not complete */
    REQUIRE(dc_ckpt_write(dir, t.net, &t.sgd, &st6, NULL) == DC_OK);
    EXPECT(!file_exists(dir, "DONE_00000006"));
    dc_ckpt_warnings w;
    dc_ckpt_warnings_clear(&w);
    EXPECT(dc_ckpt_find_latest(dir, &latest, &w) == DC_OK && latest == 3);
    EXPECT(warnings_contain(&w, "model_00000006.safetensors", "no DONE_00000006"));
    REQUIRE(dc_ckpt_commit(dir, 6, 2, NULL) == DC_OK);
    snapshot new6 = take(&t);
    expect_only_previous(dir, 6, 7, &new6, &t);
    snapshot_free(&new6);
    snapshot_free(&at6);
    snapshot_free(&at3);
    trainer_free(&t);
}

int main(void) {
    snprintf(tmp_root, sizeof tmp_root, "/tmp/dc_test_checkpoint_XXXXXX");
    REQUIRE(mkdtemp(tmp_root) != NULL);
    test_round_trip();
    test_resume_bit_identical();
    test_find_latest();
    test_pruning();
    test_metadata_and_mismatch();
    test_write_failures();
    tu_remove_tree(tmp_root);
    return tu_finish("test_checkpoint");
}
