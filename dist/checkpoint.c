/*
 * checkpoint.c: training checkpoints (see checkpoint.h for the protocol and docs/CHECKPOINTS.md for the
 * format).
 *
 * Crash safety comes from ordering, not from locks:
 *   1. model_S and state_S are written completely (atomic_file.h: temporary name, fsync, rename) under
 *      staging names, and renamed to their final names only when both exist, after removing a DONE_S of the
 *      same step; so a failed write touches no existing checkpoint and a final name never holds half a file;
 *   2. the commit reads both back and checks them (sizes, whole-file CRC32, per-tensor CRC32), and only then
 *      writes DONE_S, again atomically, recording what it read;
 *   3. pruning starts only after DONE_S is durable, and removes an old checkpoint's marker before its files.
 * A crash at any point therefore leaves, at worst, files without a marker (ignored and later removed) next to
 * the previous complete checkpoint. The marker's sizes and CRCs also catch what ordering cannot: a file
 * truncated, replaced or bit-rotted after the checkpoint was declared complete.
 *
 * Integrity uses zlib's crc32 (the same function as Python's zlib.crc32, so a user can check a file by hand):
 * per tensor, computed from memory before writing and stored as "crc32.<name>" in the file's __metadata__, it
 * checks the whole path from the live tensors to the bytes read back; per file, in the marker, it makes
 * find_latest cheap (one streaming pass, no parsing) and names the damaged tensor when it fails.
 */
#include "checkpoint.h"

#include "core/atomic_file.h"
#include "core/check.h"
#include "core/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define CKPT_PATH_MAX    4096
#define CKPT_MARKER_MAX  4096 /* a DONE marker is ~200 bytes; anything larger is not one */
#define CKPT_STEP_DIGITS 8

enum { KIND_MODEL = 0, KIND_STATE = 1, KIND_DONE = 2 };
static const char *const KIND_PREFIX[3] = {"model", "state", "DONE"};
static const char *const KIND_SUFFIX[3] = {".safetensors", ".safetensors", ""};

static const char *const MOMENTUM_PREFIX = "optimizer.momentum.";
static const char *const EXTRA_PREFIX = "extra.";
static const char *const RANK_BUFFERS = "rank_buffers";
static const char *const MARKER_MAGIC = "decouple checkpoint marker v";
static const char *const STAGE_SUFFIX = ".tmp.staged"; /* new files wait here until both are written */

/* ---- warnings ------------------------------------------------------------------------------------------ */

void dc_ckpt_warnings_clear(dc_ckpt_warnings *w) {
    if (w) w->n = w->dropped = 0;
}

static void warn(dc_ckpt_warnings *w, const char *fmt, ...) DC_PRINTF(2, 3);
static void warn(dc_ckpt_warnings *w, const char *fmt, ...) {
    if (!w) return;
    if (w->n >= DC_CKPT_MAX_WARNINGS) {
        w->dropped++;
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->line[w->n], sizeof w->line[0], fmt, ap);
    va_end(ap);
    w->n++;
}

/* ---- names --------------------------------------------------------------------------------------------- */

static int kind_index(const char *kind) {
    for (int k = 0; k < 3; k++)
        if (strcmp(kind, KIND_PREFIX[k]) == 0) return k;
    return -1;
}

static int path_of(char *buf, size_t cap, const char *dir, int kind, int64_t step) {
    int n = snprintf(buf, cap, "%s/%s_%0*" PRId64 "%s", dir, KIND_PREFIX[kind], CKPT_STEP_DIGITS, step,
                     KIND_SUFFIX[kind]);
    if (n < 0 || (size_t)n >= cap) return DC_ERR("%s: checkpoint path too long (%d bytes)", dir, n);
    return DC_OK;
}

int dc_ckpt_path(char *buf, size_t cap, const char *dir, const char *kind, int64_t step) {
    if (!buf || !dir || !kind) return DC_ERR("dc_ckpt_path: NULL argument");
    int k = kind_index(kind);
    if (k < 0) return DC_ERR("dc_ckpt_path: unknown kind '%s' (model, state or DONE)", kind);
    if (step < 0) return DC_ERR("dc_ckpt_path: negative step %" PRId64, step);
    return path_of(buf, cap, dir, k, step);
}

/* The base name of a checkpoint file, e.g. "model_00000012.safetensors". */
static void base_name(char *buf, size_t cap, int kind, int64_t step) {
    snprintf(buf, cap, "%s_%0*" PRId64 "%s", KIND_PREFIX[kind], CKPT_STEP_DIGITS, step, KIND_SUFFIX[kind]);
}

/* Recognises "<kind>_<8+ digits><suffix>" optionally followed by ".tmp.<anything>" (an atomic_file
 * temporary). Returns 1 and fills kind/step/tmp for our names, 0 for anything else. */
static int parse_name(const char *name, int *kind, int64_t *step, int *tmp) {
    for (int k = 0; k < 3; k++) {
        size_t pl = strlen(KIND_PREFIX[k]);
        if (strncmp(name, KIND_PREFIX[k], pl) != 0 || name[pl] != '_') continue;
        const char *p = name + pl + 1;
        int digits = 0;
        int64_t v = 0;
        while (p[digits] >= '0' && p[digits] <= '9') {
            if (digits >= 18) return 0;
            v = v * 10 + (p[digits] - '0');
            digits++;
        }
        if (digits < CKPT_STEP_DIGITS) return 0;
        if (digits > CKPT_STEP_DIGITS && p[0] == '0') return 0; /* only as wide as needed beyond 8 digits */
        p += digits;
        size_t sl = strlen(KIND_SUFFIX[k]);
        if (strncmp(p, KIND_SUFFIX[k], sl) != 0) return 0;
        p += sl;
        if (*p == '\0')
            *tmp = 0;
        else if (strncmp(p, ".tmp.", 5) == 0)
            *tmp = 1;
        else
            return 0;
        *kind = k;
        *step = v;
        return 1;
    }
    return 0;
}

/* ---- CRCs ---------------------------------------------------------------------------------------------- */

static uint32_t crc_bytes(const void *data, uint64_t n) {
    uLong crc = crc32(0L, Z_NULL, 0);
    const Bytef *p = data;
    while (n > 0) {
        uInt chunk = n > (1u << 30) ? (1u << 30) : (uInt)n;
        crc = crc32(crc, p, chunk);
        p += chunk;
        n -= chunk;
    }
    return (uint32_t)crc;
}

static uint64_t tensor_bytes(const dc_tensor *t) {
    return (uint64_t)dc_tensor_numel(t) * dc_dtype_size(t->dtype);
}

typedef struct {
    uint64_t size;
    uint32_t crc;
} file_sig;

/* Size and CRC32 of a whole file, in one streaming pass. */
static int file_signature(const char *path, file_sig *sig) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        if (e == ENOENT) return DC_ERR("%s: missing", path);
        return DC_ERR("%s: cannot open: %s", path, strerror(e));
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return DC_ERR("%s: not a regular file", path);
    }
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = dc_malloc(CHUNK);
    if (!buf) {
        close(fd);
        return DC_FAIL;
    }
    uLong crc = crc32(0L, Z_NULL, 0);
    uint64_t total = 0;
    int rc = DC_OK;
    for (;;) {
        ssize_t r = read(fd, buf, CHUNK);
        if (r < 0 && errno == EINTR) continue;
        if (r < 0) {
            rc = DC_ERR("%s: read error: %s", path, strerror(errno));
            break;
        }
        if (r == 0) break;
        crc = crc32(crc, buf, (uInt)r);
        total += (uint64_t)r;
    }
    free(buf);
    close(fd);
    sig->size = total;
    sig->crc = (uint32_t)crc;
    return rc;
}

/* ---- directories --------------------------------------------------------------------------------------- */

/* mkdir -p: creates dir and its missing parents. */
static int make_dirs(const char *dir) {
    char path[CKPT_PATH_MAX];
    size_t n = strlen(dir);
    if (n == 0 || n >= sizeof path) return DC_ERR("checkpoint directory: empty or too long path");
    memcpy(path, dir, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (path[i] != '/' && path[i] != '\0') continue;
        char saved = path[i];
        path[i] = '\0';
        if (mkdir(path, 0777) != 0) {
            int e = errno;
            struct stat ps; /* EEXIST, or another error on a directory that exists (EACCES on some systems) */
            if (e != EEXIST && !(stat(path, &ps) == 0 && S_ISDIR(ps.st_mode)))
                return DC_ERR("%s: cannot create the checkpoint directory (%s): %s", dir, path, strerror(e));
        }
        path[i] = saved;
    }
    struct stat st;
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
        return DC_ERR("%s: exists but is not a directory (cannot hold checkpoints)", dir);
    return DC_OK;
}

static void sync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return;
    (void)fsync(fd);
    close(fd);
}

typedef struct {
    char name[256];
    int kind;
    int64_t step;
    int tmp;
} ckpt_entry;

/* Lists our files in dir. *missing = 1 (and DC_OK) when dir does not exist. */
static int scan_dir(const char *dir, ckpt_entry **out, int *n_out, int *missing) {
    *out = NULL;
    *n_out = 0;
    *missing = 0;
    DIR *d = opendir(dir);
    if (!d) {
        int e = errno;
        if (e == ENOENT) {
            *missing = 1;
            return DC_OK;
        }
        return DC_ERR("%s: cannot read the checkpoint directory: %s", dir, strerror(e));
    }
    ckpt_entry *list = NULL;
    int n = 0, cap = 0, rc = DC_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        ckpt_entry e;
        if (strlen(de->d_name) >= sizeof e.name) continue;
        if (!parse_name(de->d_name, &e.kind, &e.step, &e.tmp)) continue;
        snprintf(e.name, sizeof e.name, "%s", de->d_name);
        if (n == cap) {
            int ncap = cap ? 2 * cap : 32;
            ckpt_entry *grown = realloc(list, (size_t)ncap * sizeof *grown);
            if (!grown) {
                rc = DC_ERR("%s: out of memory listing checkpoints", dir);
                break;
            }
            list = grown;
            cap = ncap;
        }
        list[n++] = e;
    }
    closedir(d);
    if (rc != DC_OK) {
        free(list);
        return rc;
    }
    *out = list;
    *n_out = n;
    return DC_OK;
}

static int has_entry(const ckpt_entry *list, int n, int kind, int64_t step) {
    for (int i = 0; i < n; i++)
        if (!list[i].tmp && list[i].kind == kind && list[i].step == step) return 1;
    return 0;
}

static int cmp_step_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* The steps that have a DONE marker, newest first (malloc'd). */
static int64_t *done_steps(const ckpt_entry *list, int n, int *count) {
    int64_t *steps = malloc((size_t)(n > 0 ? n : 1) * sizeof *steps);
    int c = 0;
    if (steps)
        for (int i = 0; i < n; i++)
            if (!list[i].tmp && list[i].kind == KIND_DONE) steps[c++] = list[i].step;
    if (steps) qsort(steps, (size_t)c, sizeof *steps, cmp_step_desc);
    *count = c;
    return steps;
}

/* ---- metadata writing ---------------------------------------------------------------------------------- */

typedef struct {
    char **keys, **values;
    int n, cap;
} meta_list;

static int meta_add(meta_list *m, const char *key, const char *fmt, ...) DC_PRINTF(3, 4);
static int meta_add(meta_list *m, const char *key, const char *fmt, ...) {
    if (m->n == m->cap) {
        int ncap = m->cap ? 2 * m->cap : 32;
        char **k = realloc(m->keys, (size_t)ncap * sizeof *k);
        if (k) m->keys = k;
        char **v = k ? realloc(m->values, (size_t)ncap * sizeof *v) : NULL;
        if (v) m->values = v;
        if (!k || !v) return DC_ERR("out of memory for checkpoint metadata");
        m->cap = ncap;
    }
    char value[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(value, sizeof value, fmt, ap);
    va_end(ap);
    char *kd = strdup(key), *vd = strdup(value);
    if (!kd || !vd) {
        free(kd);
        free(vd);
        return DC_ERR("out of memory for checkpoint metadata");
    }
    m->keys[m->n] = kd;
    m->values[m->n] = vd;
    m->n++;
    return DC_OK;
}

static void meta_free(meta_list *m) {
    for (int i = 0; i < m->n; i++) {
        free(m->keys[i]);
        free(m->values[i]);
    }
    free(m->keys);
    free(m->values);
    memset(m, 0, sizeof *m);
}

/* "crc32.<name>" -> 8 hex digits for every tensor. */
static int meta_add_crcs(meta_list *m, const dc_tensor *tensors, int n) {
    for (int i = 0; i < n; i++) {
        char key[DC_TENSOR_NAME + 8];
        snprintf(key, sizeof key, "crc32.%s", tensors[i].name);
        DC_TRY(meta_add(m, key, "%08" PRIx32, crc_bytes(tensors[i].data, tensor_bytes(&tensors[i]))));
    }
    return DC_OK;
}

static int write_with_meta(const char *path, const dc_tensor *tensors, int n, meta_list *m) {
    int rc = meta_add_crcs(m, tensors, n);
    if (rc == DC_OK)
        rc = dc_safetensors_write(path, tensors, n, (const char *const *)m->keys,
                                  (const char *const *)m->values, m->n);
    meta_free(m);
    return rc;
}

/* ---- writing ------------------------------------------------------------------------------------------- */

static int valid_stage(const char *s) {
    return strcmp(s, "stage1") == 0 || strcmp(s, "crt") == 0 || strcmp(s, "lws") == 0;
}

/* A tensor that views `data` under `prefix` + src->name (dtype, shape, strides copied). */
static int prefixed_view(dc_tensor *out, const char *prefix, const dc_tensor *src, void *data,
                         const char *what) {
    *out = *src;
    int n = snprintf(out->name, sizeof out->name, "%s%s", prefix, src->name);
    if (n < 0 || (size_t)n >= sizeof out->name)
        return DC_ERR("%s: tensor name '%s%s' is longer than %d bytes", what, prefix, src->name,
                      DC_TENSOR_NAME - 1);
    out->data = data;
    out->grad = NULL;
    return DC_OK;
}

/* Offset of a parameter tensor in the parameter slab, or DC_FAIL when it does not lie in it. */
static int param_offset(const dc_net *net, const dc_tensor *t, size_t *off) {
    const float *p = t->data;
    if (t->dtype != DC_F32 || p < net->params || p + dc_tensor_numel(t) > net->params + net->n_params)
        return DC_ERR("tensor '%s' is marked as a parameter but is not in the parameter slab", t->name);
    *off = (size_t)(p - net->params);
    return DC_OK;
}

static int write_model_file(const char *path, const dc_net *net, const dc_train_state *s) {
    meta_list m = {0};
    int rc = meta_add(&m, "format", "pt");
    if (rc == DC_OK) rc = meta_add(&m, "checkpoint", "decouple-model");
    if (rc == DC_OK) rc = meta_add(&m, "format_version", "%d", DC_CKPT_FORMAT_VERSION);
    if (rc == DC_OK) rc = meta_add(&m, "step", "%" PRId64, s->step);
    if (rc == DC_OK) rc = meta_add(&m, "arch", "%s", net->desc.arch);
    if (rc == DC_OK) rc = meta_add(&m, "stage", "%s", s->stage);
    if (rc != DC_OK) {
        meta_free(&m);
        return rc;
    }
    return write_with_meta(path, net->tensors, net->n_tensors, &m);
}

/* Builds the state file's tensor list: momentum views, extras, rank buffers. */
static int state_tensors(const char *path, const dc_net *net, const dc_sgd *sgd, const dc_ckpt_extra *extra,
                         dc_tensor **out, int *n_out) {
    int n_extra = extra ? extra->n_tensors : 0;
    int cap = net->n_tensors + n_extra + 1;
    dc_tensor *list = dc_calloc((size_t)cap, sizeof *list);
    if (!list) return DC_FAIL;
    int n = 0, rc = DC_OK;
    if (sgd)
        for (int i = 0; i < net->n_tensors && rc == DC_OK; i++) {
            const dc_tensor *t = &net->tensors[i];
            if (t->kind != DC_KIND_PARAM) continue;
            size_t off = 0;
            rc = param_offset(net, t, &off);
            if (rc == DC_OK)
                rc = prefixed_view(&list[n++], MOMENTUM_PREFIX, t, sgd->momentum_buf + off, path);
        }
    for (int i = 0; i < n_extra && rc == DC_OK; i++)
        rc = prefixed_view(&list[n++], EXTRA_PREFIX, &extra->tensors[i], extra->tensors[i].data, path);
    if (rc == DC_OK && extra && extra->rank_buffers) {
        dc_tensor *t = &list[n++];
        snprintf(t->name, sizeof t->name, "%s", RANK_BUFFERS);
        t->dtype = DC_F32;
        t->ndim = 2;
        t->shape[0] = extra->world;
        t->shape[1] = (int64_t)net->n_buffers;
        dc_tensor_set_contiguous(t);
        t->data = (void *)extra->rank_buffers;
        t->kind = DC_KIND_BUFFER;
    }
    if (rc != DC_OK) {
        free(list);
        return rc;
    }
    *out = list;
    *n_out = n;
    return DC_OK;
}

static int write_state_file(const char *path, const dc_net *net, const dc_sgd *sgd, const dc_train_state *s,
                            const dc_ckpt_extra *extra) {
    dc_tensor *list = NULL;
    int n = 0;
    DC_TRY(state_tensors(path, net, sgd, extra, &list, &n));
    meta_list m = {0};
    int rc = DC_OK;
#define ADD(...)                                                                                             \
    if (rc == DC_OK) rc = meta_add(&m, __VA_ARGS__)
    ADD("format", "pt");
    ADD("checkpoint", "decouple-train-state");
    ADD("format_version", "%d", DC_CKPT_FORMAT_VERSION);
    ADD("step", "%" PRId64, s->step);
    ADD("epoch", "%" PRId64, s->epoch);
    ADD("step_in_epoch", "%" PRId64, s->step_in_epoch);
    ADD("steps_per_epoch", "%" PRId64, s->steps_per_epoch);
    ADD("seed", "%" PRIu64, s->seed);
    ADD("rng", "counter-based (core/rng.h): every stream is H(key(seed, purpose, epoch, index), counter); "
               "the seed and the step are the whole generator state");
    ADD("config_hash", "%016" PRIx64, s->config_hash);
    ADD("world_size", "%d", s->world_size);
    ADD("stage", "%s", s->stage);
    ADD("train_seconds", "%.17g", s->train_seconds);
    ADD("optimizer", sgd ? "sgd" : "none");
    ADD("optimizer_step", "%" PRId64, sgd ? sgd->step : (int64_t)0);
    ADD("momentum", sgd ? "per parameter: optimizer.momentum.<state_dict name>" : "none");
    ADD("arch", "%s", net->desc.arch);
    ADD("num_classes", "%d", net->desc.num_classes);
    ADD("n_params", "%zu", net->n_params);
#undef ADD
    if (rc != DC_OK) {
        meta_free(&m);
        free(list);
        return rc;
    }
    rc = write_with_meta(path, list, n, &m);
    free(list);
    return rc;
}

int dc_ckpt_write(const char *dir, const dc_net *net, const dc_sgd *sgd, const dc_train_state *state,
                  const dc_ckpt_extra *extra) {
    if (!dir || !dir[0]) return DC_ERR("checkpoint: empty directory name");
    if (!net || !state) return DC_ERR("%s: checkpoint: NULL net or state", dir);
    if (state->step < 0) return DC_ERR("%s: checkpoint: negative step %" PRId64, dir, state->step);
    if (!memchr(state->stage, '\0', sizeof state->stage) || !valid_stage(state->stage))
        return DC_ERR("%s: checkpoint: stage must be \"stage1\", \"crt\" or \"lws\"", dir);
    if (sgd && sgd->n_params != net->n_params)
        return DC_ERR("%s: checkpoint: the optimizer has %zu parameters, the net %zu", dir, sgd->n_params,
                      net->n_params);
    if (extra && extra->n_tensors > 0 && !extra->tensors)
        return DC_ERR("%s: checkpoint: extra->n_tensors = %d with no tensors", dir, extra->n_tensors);
    if (extra && extra->rank_buffers && extra->world < 1)
        return DC_ERR("%s: checkpoint: rank_buffers given with world = %d", dir, extra->world);
    if (extra && extra->rank_buffers && extra->world != state->world_size)
        return DC_ERR("%s: checkpoint: rank_buffers holds %d ranks but state->world_size is %d", dir,
                      extra->world, state->world_size);

    char model[CKPT_PATH_MAX], st[CKPT_PATH_MAX], done[CKPT_PATH_MAX];
    char model_stage[CKPT_PATH_MAX + 16], st_stage[CKPT_PATH_MAX + 16];
    const int64_t step = state->step;
    DC_TRY(path_of(model, sizeof model, dir, KIND_MODEL, step));
    DC_TRY(path_of(st, sizeof st, dir, KIND_STATE, step));
    DC_TRY(path_of(done, sizeof done, dir, KIND_DONE, step));
    snprintf(model_stage, sizeof model_stage, "%s%s", model, STAGE_SUFFIX);
    snprintf(st_stage, sizeof st_stage, "%s%s", st, STAGE_SUFFIX);
    DC_TRY(make_dirs(dir));

    /* 1. Both files, complete and fsynced, under staging names: a failure here (disk full, permissions)
     *    touches no existing file, not even a checkpoint of the same step. */
    if (write_model_file(model_stage, net, state) != DC_OK)
        return dc_error_wrap("writing checkpoint step %" PRId64, step);
    if (write_state_file(st_stage, net, sgd, state, extra) != DC_OK) {
        unlink(model_stage);
        return dc_error_wrap("writing checkpoint step %" PRId64, step);
    }
    /* 2. Into place. A marker of the same step describes the files about to be replaced, so it goes first
     *    (durably): there is never a marker next to files it does not describe. */
    int rc = DC_OK;
    if (unlink(done) == 0)
        sync_dir(dir);
    else if (errno != ENOENT)
        rc = DC_ERR("%s: cannot remove the marker before rewriting step %" PRId64 ": %s", done, step,
                    strerror(errno));
    if (rc == DC_OK && rename(model_stage, model) != 0)
        rc = DC_ERR("%s: cannot rename %s over it: %s", model, model_stage, strerror(errno));
    if (rc == DC_OK && rename(st_stage, st) != 0) {
        rc = DC_ERR("%s: cannot rename %s over it: %s", st, st_stage, strerror(errno));
        unlink(model); /* a model without its state is useless */
    }
    if (rc != DC_OK) {
        unlink(model_stage);
        unlink(st_stage);
        return dc_error_wrap("writing checkpoint step %" PRId64, step);
    }
    sync_dir(dir);
    return DC_OK;
}

/* ---- reading: per-tensor CRCs and metadata ------------------------------------------------------------- */

static int parse_hex32(const char *s, uint32_t *out) {
    uint32_t v = 0;
    int i = 0;
    for (; s[i]; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0 || i >= 8) return DC_FAIL;
        v = (v << 4) | (uint32_t)d;
    }
    if (i != 8) return DC_FAIL;
    *out = v;
    return DC_OK;
}

/* Every tensor of f must have "crc32.<name>" and match it. */
static int check_tensor_crcs(const dc_st_file *f, const char *path) {
    for (int i = 0; i < f->n_entries; i++) {
        const dc_st_entry *e = &f->entries[i];
        char key[DC_TENSOR_NAME + 8];
        snprintf(key, sizeof key, "crc32.%s", e->name);
        const char *v = dc_st_meta(f, key);
        uint32_t stored;
        if (!v)
            return DC_ERR("%s: tensor '%s' has no CRC32 in __metadata__ (key \"%s\")", path, e->name, key);
        if (parse_hex32(v, &stored) != DC_OK)
            return DC_ERR("%s: __metadata__ \"%s\": expected 8 hex digits, got \"%.40s\"", path, key, v);
        uint32_t got = crc_bytes(f->data + e->begin, e->end - e->begin);
        if (got != stored)
            return DC_ERR("%s: tensor '%s' fails its CRC32 check (stored %08" PRIx32 ", computed %08" PRIx32
                          "): the file is corrupted",
                          path, e->name, stored, got);
    }
    return DC_OK;
}

static int meta_get(const dc_st_file *f, const char *path, const char *key, const char **out) {
    *out = dc_st_meta(f, key);
    if (!*out)
        return DC_ERR("%s: __metadata__ has no \"%s\" (not a decouple checkpoint, or damaged)", path, key);
    return DC_OK;
}

/* Strict decimal integer in [lo, hi]: optional '-', digits, nothing else. */
static int meta_i64(const dc_st_file *f, const char *path, const char *key, int64_t lo, int64_t hi,
                    int64_t *out) {
    const char *v;
    DC_TRY(meta_get(f, path, key, &v));
    const char *p = v;
    int neg = *p == '-';
    if (neg) p++;
    if (*p < '0' || *p > '9')
        return DC_ERR("%s: __metadata__ \"%s\": expected an integer, got \"%.40s\"", path, key, v);
    uint64_t mag = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (mag > (UINT64_MAX - 9) / 10)
            return DC_ERR("%s: __metadata__ \"%s\": integer \"%.40s\" out of range", path, key, v);
        mag = mag * 10 + (uint64_t)(*p - '0');
    }
    if (*p) return DC_ERR("%s: __metadata__ \"%s\": expected an integer, got \"%.40s\"", path, key, v);
    if (mag > (uint64_t)INT64_MAX)
        return DC_ERR("%s: __metadata__ \"%s\": \"%.40s\" out of range", path, key, v);
    int64_t x = neg ? -(int64_t)mag : (int64_t)mag;
    if (x < lo || x > hi)
        return DC_ERR("%s: __metadata__ \"%s\": %" PRId64 " is outside [%" PRId64 ", %" PRId64 "]", path, key,
                      x, lo, hi);
    *out = x;
    return DC_OK;
}

static int meta_u64(const dc_st_file *f, const char *path, const char *key, int hex, uint64_t *out) {
    const char *v;
    DC_TRY(meta_get(f, path, key, &v));
    uint64_t x = 0;
    const char *p = v;
    for (; *p; p++) {
        int d = *p >= '0' && *p <= '9' ? *p - '0' : hex && *p >= 'a' && *p <= 'f' ? *p - 'a' + 10 : -1;
        uint64_t base = hex ? 16 : 10;
        if (d < 0 || x > (UINT64_MAX - (uint64_t)d) / base) break;
        x = x * base + (uint64_t)d;
    }
    if (*p || p == v || (hex && p - v != 16))
        return DC_ERR("%s: __metadata__ \"%s\": expected %s, got \"%.40s\"", path, key,
                      hex ? "16 lowercase hex digits" : "an unsigned integer", v);
    *out = x;
    return DC_OK;
}

static int meta_str(const dc_st_file *f, const char *path, const char *key, char *out, size_t cap) {
    const char *v;
    DC_TRY(meta_get(f, path, key, &v));
    if (strlen(v) >= cap)
        return DC_ERR("%s: __metadata__ \"%s\": value longer than %zu bytes", path, key, cap - 1);
    memcpy(out, v, strlen(v) + 1);
    return DC_OK;
}

/* The "checkpoint" kind and the format version. */
static int check_format(const dc_st_file *f, const char *path, const char *kind) {
    char got[64];
    DC_TRY(meta_str(f, path, "checkpoint", got, sizeof got));
    if (strcmp(got, kind) != 0)
        return DC_ERR("%s: __metadata__ \"checkpoint\" is \"%s\", expected \"%s\"", path, got, kind);
    int64_t version;
    DC_TRY(meta_i64(f, path, "format_version", 1, INT32_MAX, &version));
    if (version > DC_CKPT_FORMAT_VERSION)
        return DC_ERR("%s: written by a newer decouple (checkpoint format version %" PRId64
                      ", this build reads up to %d)",
                      path, version, DC_CKPT_FORMAT_VERSION);
    return DC_OK;
}

/* Parses the state file's metadata into s (checks every field). */
static int parse_state_meta(const dc_st_file *f, const char *path, int64_t expect_step, dc_train_state *s) {
    memset(s, 0, sizeof *s);
    int64_t v;
    DC_TRY(check_format(f, path, "decouple-train-state"));
    DC_TRY(meta_i64(f, path, "step", 0, INT64_MAX, &s->step));
    if (expect_step >= 0 && s->step != expect_step)
        return DC_ERR("%s: __metadata__ \"step\" is %" PRId64 " but the file name says %" PRId64, path,
                      s->step, expect_step);
    DC_TRY(meta_i64(f, path, "epoch", 0, INT64_MAX, &s->epoch));
    DC_TRY(meta_i64(f, path, "step_in_epoch", 0, INT64_MAX, &s->step_in_epoch));
    DC_TRY(meta_i64(f, path, "steps_per_epoch", 0, INT64_MAX, &s->steps_per_epoch));
    if (s->steps_per_epoch > 0 &&
        (s->epoch != s->step / s->steps_per_epoch || s->step_in_epoch != s->step % s->steps_per_epoch))
        return DC_ERR("%s: __metadata__ sampler position is inconsistent: step %" PRId64 " with %" PRId64
                      " steps per epoch is epoch %" PRId64 " step %" PRId64 ", the file says epoch %" PRId64
                      " step %" PRId64,
                      path, s->step, s->steps_per_epoch, s->step / s->steps_per_epoch,
                      s->step % s->steps_per_epoch, s->epoch, s->step_in_epoch);
    DC_TRY(meta_u64(f, path, "seed", 0, &s->seed));
    DC_TRY(meta_u64(f, path, "config_hash", 1, &s->config_hash));
    DC_TRY(meta_i64(f, path, "world_size", 1, INT32_MAX, &v));
    s->world_size = (int)v;
    DC_TRY(meta_str(f, path, "stage", s->stage, sizeof s->stage));
    if (!valid_stage(s->stage))
        return DC_ERR("%s: __metadata__ \"stage\": \"%s\" is not stage1, crt or lws", path, s->stage);
    const char *secs;
    DC_TRY(meta_get(f, path, "train_seconds", &secs));
    char *end = NULL;
    s->train_seconds = strtod(secs, &end);
    if (end == secs || *end || !(s->train_seconds >= 0))
        return DC_ERR("%s: __metadata__ \"train_seconds\": expected a non-negative number, got \"%.40s\"",
                      path, secs);
    DC_TRY(meta_i64(f, path, "optimizer_step", 0, INT64_MAX, &s->optimizer_step));
    DC_TRY(meta_str(f, path, "arch", s->arch, sizeof s->arch));
    DC_TRY(meta_i64(f, path, "num_classes", 1, INT32_MAX, &v));
    s->num_classes = (int)v;
    DC_TRY(meta_i64(f, path, "n_params", 0, INT64_MAX, &s->n_params));
    return DC_OK;
}

/* ---- the DONE marker ----------------------------------------------------------------------------------- */

static int write_marker(const char *dir, int64_t step, const file_sig sig[2]) {
    char path[CKPT_PATH_MAX], text[1024], names[2][128];
    DC_TRY(path_of(path, sizeof path, dir, KIND_DONE, step));
    base_name(names[0], sizeof names[0], KIND_MODEL, step);
    base_name(names[1], sizeof names[1], KIND_STATE, step);
    snprintf(text, sizeof text,
             "%s%d\nstep %" PRId64 "\n%s size %" PRIu64 " crc32 %08" PRIx32 "\n%s size %" PRIu64
             " crc32 %08" PRIx32 "\n",
             MARKER_MAGIC, DC_CKPT_FORMAT_VERSION, step, names[0], sig[0].size, sig[0].crc, names[1],
             sig[1].size, sig[1].crc);
    return dc_atomic_write(path, text, strlen(text));
}

/* Strict unsigned decimal token at *p followed by a space, newline or end; advances *p. */
static int take_u64(const char **p, uint64_t *out) {
    const char *s = *p;
    uint64_t v = 0;
    if (*s < '0' || *s > '9') return DC_FAIL;
    for (; *s >= '0' && *s <= '9'; s++) {
        if (v > (UINT64_MAX - 9) / 10) return DC_FAIL;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    *p = s;
    return DC_OK;
}

static int take_lit(const char **p, const char *lit) {
    size_t n = strlen(lit);
    if (strncmp(*p, lit, n) != 0) return DC_FAIL;
    *p += n;
    return DC_OK;
}

/* Reads DONE_<step> into sig[0] (model) and sig[1] (state). Errors name the marker. */
static int read_marker(const char *dir, int64_t step, file_sig sig[2]) {
    char path[CKPT_PATH_MAX];
    DC_TRY(path_of(path, sizeof path, dir, KIND_DONE, step));
    FILE *fp = fopen(path, "rb");
    if (!fp) {
        int e = errno;
        if (e == ENOENT) return DC_ERR("%s: missing (the checkpoint was never completed)", path);
        return DC_ERR("%s: cannot open: %s", path, strerror(e));
    }
    char text[CKPT_MARKER_MAX + 1];
    size_t n = fread(text, 1, CKPT_MARKER_MAX + 1, fp);
    int read_err = ferror(fp);
    fclose(fp);
    if (read_err) return DC_ERR("%s: read error", path);
    if (n > CKPT_MARKER_MAX)
        return DC_ERR("%s: larger than %d bytes: not a checkpoint marker", path, CKPT_MARKER_MAX);
    text[n] = '\0';
    if (memchr(text, '\0', n)) return DC_ERR("%s: contains NUL bytes: not a checkpoint marker", path);

    const char *p = text;
    uint64_t version = 0, step_in = 0;
    if (take_lit(&p, MARKER_MAGIC) != DC_OK || take_u64(&p, &version) != DC_OK || take_lit(&p, "\n") != DC_OK)
        return DC_ERR("%s: line 1: expected \"%s%d\"", path, MARKER_MAGIC, DC_CKPT_FORMAT_VERSION);
    if (version == 0 || version > DC_CKPT_FORMAT_VERSION)
        return DC_ERR("%s: line 1: marker version %" PRIu64 " (this build reads up to %d)", path, version,
                      DC_CKPT_FORMAT_VERSION);
    if (take_lit(&p, "step ") != DC_OK || take_u64(&p, &step_in) != DC_OK || take_lit(&p, "\n") != DC_OK)
        return DC_ERR("%s: line 2: expected \"step <integer>\"", path);
    if (step_in != (uint64_t)step)
        return DC_ERR("%s: line 2: records step %" PRIu64 " but the file name says %" PRId64, path, step_in,
                      step);
    for (int k = 0; k < 2; k++) {
        char name[128];
        base_name(name, sizeof name, k == 0 ? KIND_MODEL : KIND_STATE, step);
        const char *q;
        if (take_lit(&p, name) != DC_OK || take_lit(&p, " size ") != DC_OK ||
            take_u64(&p, &sig[k].size) != DC_OK || take_lit(&p, " crc32 ") != DC_OK)
            return DC_ERR("%s: line %d: expected \"%s size <bytes> crc32 <8 hex digits>\"", path, 3 + k,
                          name);
        char hex[9] = {0};
        q = p;
        for (int i = 0; i < 8 && *q && *q != '\n'; i++) hex[i] = *q++;
        uint32_t c32;
        if (parse_hex32(hex, &c32) != DC_OK || take_lit(&q, "\n") != DC_OK)
            return DC_ERR("%s: line %d: expected \"%s size <bytes> crc32 <8 hex digits>\"", path, 3 + k,
                          name);
        sig[k].crc = c32;
        p = q;
    }
    if (*p) return DC_ERR("%s: unexpected text after line 4", path);
    return DC_OK;
}

/* ---- verification -------------------------------------------------------------------------------------- */

/* The whole-file CRC does not match: find out which tensor is damaged, for the message. */
static int diagnose_crc(const char *path, const file_sig *want, const file_sig *got) {
    dc_st_file f;
    if (dc_st_read(path, &f) != DC_OK)
        return dc_error_wrap("%s: CRC32 %08" PRIx32 " but the DONE marker records %08" PRIx32
                             ", and it no longer "
                             "parses",
                             path, got->crc, want->crc);
    int rc = check_tensor_crcs(&f, path);
    dc_st_free(&f);
    if (rc != DC_OK) return rc; /* names the tensor */
    return DC_ERR("%s: CRC32 %08" PRIx32 " but the DONE marker records %08" PRIx32
                  "; every tensor passes its own "
                  "CRC32, so the header or metadata bytes were changed",
                  path, got->crc, want->crc);
}

static int verify_file(const char *path, const file_sig *want) {
    file_sig got;
    DC_TRY(file_signature(path, &got));
    if (got.size != want->size)
        return DC_ERR("%s: %" PRIu64 " bytes, the DONE marker records %" PRIu64
                      " (truncated or replaced after the "
                      "checkpoint was written)",
                      path, got.size, want->size);
    if (got.crc != want->crc) return diagnose_crc(path, want, &got);
    return DC_OK;
}

int dc_ckpt_verify(const char *dir, int64_t step) {
    if (!dir) return DC_ERR("checkpoint: NULL directory");
    if (step < 0) return DC_ERR("%s: checkpoint: negative step %" PRId64, dir, step);
    file_sig sig[2];
    DC_TRY(read_marker(dir, step, sig));
    for (int k = 0; k < 2; k++) {
        char path[CKPT_PATH_MAX];
        DC_TRY(path_of(path, sizeof path, dir, k == 0 ? KIND_MODEL : KIND_STATE, step));
        DC_TRY(verify_file(path, &sig[k]));
    }
    return DC_OK;
}

/* ---- commit and pruning -------------------------------------------------------------------------------- */

/* Read-back check of a freshly written file: parses, every tensor's CRC, kind and step in the metadata. */
static int check_written(const char *path, const char *kind, int64_t step) {
    dc_st_file f;
    DC_TRY(dc_st_read(path, &f));
    int rc = check_tensor_crcs(&f, path);
    if (rc == DC_OK) rc = check_format(&f, path, kind);
    int64_t s = -1;
    if (rc == DC_OK) rc = meta_i64(&f, path, "step", 0, INT64_MAX, &s);
    if (rc == DC_OK && s != step)
        rc = DC_ERR("%s: __metadata__ \"step\" is %" PRId64 ", expected %" PRId64, path, s, step);
    dc_st_free(&f);
    return rc;
}

static void remove_file(const char *dir, const char *name, dc_ckpt_warnings *w) {
    char path[CKPT_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    if (unlink(path) != 0 && errno != ENOENT) warn(w, "%s: cannot remove: %s", path, strerror(errno));
}

/* Removes a complete checkpoint: marker first (durably), then the files. */
static void remove_checkpoint(const char *dir, int64_t step, dc_ckpt_warnings *w) {
    char name[128];
    base_name(name, sizeof name, KIND_DONE, step);
    remove_file(dir, name, w);
    sync_dir(dir);
    base_name(name, sizeof name, KIND_MODEL, step);
    remove_file(dir, name, w);
    base_name(name, sizeof name, KIND_STATE, step);
    remove_file(dir, name, w);
}

static void prune(const char *dir, int64_t step, int keep_last, dc_ckpt_warnings *w) {
    ckpt_entry *list = NULL;
    int n = 0, missing = 0, n_done = 0;
    if (scan_dir(dir, &list, &n, &missing) != DC_OK || missing) {
        warn(w, "not pruning old checkpoints: %s", missing ? "the directory vanished" : dc_last_error());
        free(list);
        return;
    }
    if (!has_entry(list, n, KIND_DONE, step)) {
        warn(w, "not pruning old checkpoints: DONE marker of step %" PRId64 " not found in %s", step, dir);
        free(list);
        return;
    }
    int64_t *done = done_steps(list, n, &n_done);
    if (!done) {
        free(list);
        return;
    }
    /* keep[i]: step done[i] stays. Newer than `step`: an abandoned timeline; then the keep_last newest. */
    int kept = 0;
    for (int i = 0; i < n_done; i++) {
        if (done[i] > step) {
            warn(w,
                 "removing checkpoint step %" PRId64 " in %s: it is newer than the checkpoint just written "
                 "(step %" PRId64 "), left by a run that was resumed from an earlier step",
                 done[i], dir, step);
            remove_checkpoint(dir, done[i], w);
            done[i] = -1;
        } else if (keep_last > 0 && kept >= keep_last) {
            remove_checkpoint(dir, done[i], w);
            done[i] = -1;
        } else {
            kept++;
        }
    }
    /* Leftovers: temporaries of interrupted writes, and files of steps without a (kept) marker. */
    for (int i = 0; i < n; i++) {
        const ckpt_entry *e = &list[i];
        int keep = 0;
        if (!e->tmp)
            for (int j = 0; j < n_done && !keep; j++) keep = done[j] == e->step;
        if (keep) continue;
        char path[CKPT_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", dir, e->name);
        if (access(path, F_OK) != 0) continue; /* removed with its checkpoint above */
        if (e->tmp)
            warn(w, "removed %s: temporary file of an interrupted write", path);
        else if (e->kind != KIND_DONE)
            warn(w, "removed %s: no DONE marker (the write of step %" PRId64 " did not finish)", path,
                 e->step);
        remove_file(dir, e->name, w);
    }
    free(done);
    free(list);
}

int dc_ckpt_discard_newer(const char *dir, int64_t step, dc_ckpt_warnings *w) {
    if (!dir) return DC_ERR("dc_ckpt_discard_newer: NULL directory");
    ckpt_entry *list = NULL;
    int n = 0, missing = 0, n_done = 0;
    DC_TRY(scan_dir(dir, &list, &n, &missing));
    int64_t *done = done_steps(list, n, &n_done);
    for (int i = 0; done && i < n_done; i++)
        if (done[i] > step) {
            warn(w,
                 "removing checkpoint step %" PRId64 " in %s: newer than step %" PRId64
                 ", which this run resumed "
                 "from",
                 done[i], dir, step);
            remove_checkpoint(dir, done[i], w);
        }
    for (int i = 0; i < n; i++) /* files of newer steps without a marker */
        if (list[i].step > step && !list[i].tmp && list[i].kind != KIND_DONE)
            remove_file(dir, list[i].name, w);
    free(done);
    free(list);
    return DC_OK;
}

int dc_ckpt_commit(const char *dir, int64_t step, int keep_last, dc_ckpt_warnings *w) {
    if (!dir || !dir[0]) return DC_ERR("checkpoint: empty directory name");
    if (step < 0) return DC_ERR("%s: checkpoint: negative step %" PRId64, dir, step);
    file_sig sig[2];
    static const char *const kinds[2] = {"decouple-model", "decouple-train-state"};
    for (int k = 0; k < 2; k++) {
        char path[CKPT_PATH_MAX];
        DC_TRY(path_of(path, sizeof path, dir, k == 0 ? KIND_MODEL : KIND_STATE, step));
        if (file_signature(path, &sig[k]) != DC_OK || check_written(path, kinds[k], step) != DC_OK)
            return dc_error_wrap("committing checkpoint step %" PRId64, step);
    }
    /* The two files passed; what the marker records is what was just read back. */
    if (write_marker(dir, step, sig) != DC_OK)
        return dc_error_wrap("committing checkpoint step %" PRId64, step);
    prune(dir, step, keep_last, w);
    return DC_OK;
}

int dc_ckpt_save(const char *dir, const dc_net *net, const dc_sgd *sgd, const dc_train_state *state,
                 const dc_ckpt_extra *extra, int keep_last, dc_ckpt_warnings *w) {
    DC_TRY(dc_ckpt_write(dir, net, sgd, state, extra));
    return dc_ckpt_commit(dir, state->step, keep_last, w);
}

/* ---- finding the latest -------------------------------------------------------------------------------- */

int dc_ckpt_find_latest(const char *dir, int64_t *step, dc_ckpt_warnings *w) {
    if (!dir || !step) return DC_ERR("dc_ckpt_find_latest: NULL argument");
    ckpt_entry *list = NULL;
    int n = 0, missing = 0, n_done = 0;
    DC_TRY(scan_dir(dir, &list, &n, &missing));
    if (missing) return DC_CKPT_NONE;
    int64_t *done = done_steps(list, n, &n_done);
    if (!done) {
        free(list);
        return DC_ERR("%s: out of memory", dir);
    }
    int64_t found = -1;
    for (int i = 0; i < n_done && found < 0; i++) {
        if (dc_ckpt_verify(dir, done[i]) == DC_OK)
            found = done[i];
        else
            warn(w, "skipping checkpoint step %" PRId64 ": %s", done[i], dc_last_error());
    }
    for (int i = 0; i < n; i++) {
        const ckpt_entry *e = &list[i];
        if (e->tmp)
            warn(w, "ignoring %s/%s: temporary file of an interrupted write", dir, e->name);
        else if (e->kind != KIND_DONE && e->step > found && !has_entry(list, n, KIND_DONE, e->step))
            warn(w, "ignoring %s/%s: no DONE_%0*" PRId64 " marker (the checkpoint write did not finish)", dir,
                 e->name, CKPT_STEP_DIGITS, e->step);
    }
    free(done);
    free(list);
    if (found < 0) return DC_CKPT_NONE;
    *step = found;
    return DC_OK;
}

/* ---- loading ------------------------------------------------------------------------------------------- */

static void copy_in(const dc_st_file *f, const dc_tensor *t) {
    const dc_st_entry *e = dc_st_find(f, t->name);
    if (e && e->end > e->begin) memcpy(t->data, f->data + e->begin, (size_t)(e->end - e->begin));
}

/* Reads and checks one of the two files: parse, per-tensor CRCs, kind, step. */
static int read_checked(const char *path, const char *kind, int64_t step, dc_st_file *f) {
    DC_TRY(dc_st_read(path, f));
    int64_t s = -1;
    int rc = check_tensor_crcs(f, path);
    if (rc == DC_OK) rc = check_format(f, path, kind);
    if (rc == DC_OK) rc = meta_i64(f, path, "step", 0, INT64_MAX, &s);
    if (rc == DC_OK && s != step)
        rc =
            DC_ERR("%s: __metadata__ \"step\" is %" PRId64 " but the file name says %" PRId64, path, s, step);
    if (rc != DC_OK) dc_st_free(f);
    return rc;
}

int dc_ckpt_read_state(const char *dir, int64_t step, dc_train_state *state) {
    if (!dir || !state) return DC_ERR("dc_ckpt_read_state: NULL argument");
    char path[CKPT_PATH_MAX];
    DC_TRY(path_of(path, sizeof path, dir, KIND_STATE, step));
    dc_st_file f;
    DC_TRY(read_checked(path, "decouple-train-state", step, &f));
    int rc = parse_state_meta(&f, path, step, state);
    dc_st_free(&f);
    return rc;
}

int dc_ckpt_load(const char *dir, int64_t step, dc_net *net, dc_sgd *sgd, const dc_ckpt_load_opts *opts,
                 dc_train_state *state, dc_ckpt_warnings *w) {
    if (!dir || !net || !state) return DC_ERR("dc_ckpt_load: NULL argument");
    if (step < 0) return DC_ERR("%s: checkpoint: negative step %" PRId64, dir, step);
    dc_ckpt_load_opts none = {0};
    none.world = 1;
    if (!opts) opts = &none;
    if (opts->n_extra > 0 && !opts->extra)
        return DC_ERR("%s: dc_ckpt_load: n_extra %d with no tensors", dir, opts->n_extra);
    if (sgd && sgd->n_params != net->n_params)
        return DC_ERR("%s: dc_ckpt_load: the optimizer has %zu parameters, the net %zu", dir, sgd->n_params,
                      net->n_params);

    char model_path[CKPT_PATH_MAX], state_path[CKPT_PATH_MAX];
    DC_TRY(path_of(model_path, sizeof model_path, dir, KIND_MODEL, step));
    DC_TRY(path_of(state_path, sizeof state_path, dir, KIND_STATE, step));
    DC_TRY(dc_ckpt_verify(dir, step)); /* marker, sizes, whole-file CRCs */

    dc_st_file sf, mf;
    memset(&mf, 0, sizeof mf);
    DC_TRY(read_checked(state_path, "decouple-train-state", step, &sf));
    dc_train_state st;
    int rc = parse_state_meta(&sf, state_path, step, &st);
    if (rc == DC_OK && opts->check_config_hash && st.config_hash != opts->config_hash) {
        DC_ERR("%s: config changed since the checkpoint: config hash %016" PRIx64
               " in the checkpoint, %016" PRIx64
               " now (resume with the same config, or start a new run in another log_dir)",
               state_path, st.config_hash, opts->config_hash);
        *state = st;
        dc_st_free(&sf);
        return DC_CKPT_CONFIG_CHANGED;
    }
    if (rc == DC_OK && opts->stage && strcmp(opts->stage, st.stage) != 0)
        rc = DC_ERR("%s: the checkpoint is of stage \"%s\", this job runs \"%s\"", state_path, st.stage,
                    opts->stage);
    if (rc == DC_OK) rc = read_checked(model_path, "decouple-model", step, &mf);

    /* names, dtypes, shapes: the model file against the net */
    dc_problem_list pl = {0};
    if (rc == DC_OK) {
        dc_st_match(&mf, net->tensors, net->n_tensors, 0, NULL, &pl);
        if (pl.count) {
            const char *file_arch = dc_st_meta(&mf, "arch");
            char arch_note[200] = "";
            if (file_arch && strcmp(file_arch, net->desc.arch) != 0)
                snprintf(arch_note, sizeof arch_note, " (a checkpoint of arch '%.60s', the model is '%s')",
                         file_arch, net->desc.arch);
            rc = DC_ERR("%s: does not fit the model%s: %d problem%s:%s", model_path, arch_note, pl.count,
                        pl.count == 1 ? "" : "s", dc_problem_text(&pl));
        }
    }

    /* the state file: momentum views into a scratch slab (copied only when everything passed), extras */
    float *momentum = NULL;
    dc_tensor *want = NULL;
    int n_want = 0;
    if (rc == DC_OK && sgd) {
        momentum = dc_malloc_aligned((net->n_params ? net->n_params : 1) * sizeof(float));
        if (!momentum) rc = DC_FAIL;
    }
    if (rc == DC_OK) {
        dc_ckpt_extra ex = {opts->extra, opts->n_extra, NULL, 0};
        dc_sgd tmp_sgd;
        memset(&tmp_sgd, 0, sizeof tmp_sgd);
        if (sgd) {
            tmp_sgd = *sgd;
            tmp_sgd.momentum_buf = momentum;
        }
        rc = state_tensors(state_path, net, sgd ? &tmp_sgd : NULL, &ex, &want, &n_want);
    }
    const dc_st_entry *rb = NULL;
    if (rc == DC_OK) {
        memset(&pl, 0, sizeof pl);
        dc_st_match(&sf, want, n_want, 0, RANK_BUFFERS, &pl);
        rb = dc_st_find(&sf, RANK_BUFFERS);
        if (rb && (rb->dtype != DC_F32 || rb->ndim != 2 || rb->shape[1] != (int64_t)net->n_buffers ||
                   rb->shape[0] < 1))
            dc_problem_add(&pl, "tensor '%s' must be F32 [world, %zu]", RANK_BUFFERS, net->n_buffers);
        if (pl.count) {
            rc = DC_ERR("%s: does not fit the %s%s: %d problem%s:%s", state_path,
                        sgd ? "model and optimizer" : "model", opts->n_extra ? " and extra state" : "",
                        pl.count, pl.count == 1 ? "" : "s", dc_problem_text(&pl));
        }
    }
    if (rc == DC_OK && st.n_params != (int64_t)net->n_params)
        rc = DC_ERR("%s: __metadata__ \"n_params\" is %" PRId64 ", the model has %zu", state_path,
                    st.n_params, net->n_params);

    /* everything checked: now modify */
    if (rc == DC_OK) {
        for (int i = 0; i < net->n_tensors; i++) copy_in(&mf, &net->tensors[i]);
        for (int i = 0; i < n_want; i++) copy_in(&sf, &want[i]);
        if (sgd) {
            memcpy(sgd->momentum_buf, momentum, net->n_params * sizeof(float));
            sgd->step = st.optimizer_step;
        }
        if (rb) {
            int64_t W = rb->shape[0];
            if (W == opts->world && opts->rank >= 0 && opts->rank < W)
                memcpy(net->buffers,
                       sf.data + rb->begin + (uint64_t)opts->rank * net->n_buffers * sizeof(float),
                       net->n_buffers * sizeof(float));
            else
                warn(w,
                     "%s: per-rank BN statistics were saved for %" PRId64
                     " ranks, this run has %d: every rank "
                     "starts from rank 0's running statistics",
                     state_path, W, opts->world);
        }
        *state = st;
    }
    dc_free_aligned(momentum);
    free(want);
    dc_st_free(&sf);
    dc_st_free(&mf);
    return rc;
}

/* ---- --resume PATH ------------------------------------------------------------------------------------- */

int dc_ckpt_resolve(const char *path, char *dir_out, size_t dir_cap, int64_t *step, dc_ckpt_warnings *w) {
    if (!path || !dir_out || !step) return DC_ERR("dc_ckpt_resolve: NULL argument");
    struct stat st;
    if (stat(path, &st) != 0) return DC_ERR("%s: cannot resume from it: %s", path, strerror(errno));
    if (S_ISDIR(st.st_mode)) {
        if (strlen(path) >= dir_cap) return DC_ERR("%s: path too long", path);
        snprintf(dir_out, dir_cap, "%s", path);
        int rc = dc_ckpt_find_latest(path, step, w);
        if (rc == DC_CKPT_NONE) DC_ERR("%s: holds no complete checkpoint", path);
        return rc;
    }
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int kind, tmp;
    int64_t s;
    if (!parse_name(base, &kind, &s, &tmp) || tmp)
        return DC_ERR(
            "%s: not a checkpoint file (expected model_/state_/DONE_<step> or a checkpoint directory)", path);
    size_t dn = slash ? (size_t)(slash - path) : 1;
    if (dn + 1 > dir_cap) return DC_ERR("%s: path too long", path);
    if (slash) {
        memcpy(dir_out, path, dn);
        dir_out[dn] = '\0';
        if (dn == 0) snprintf(dir_out, dir_cap, "/");
    } else {
        snprintf(dir_out, dir_cap, ".");
    }
    *step = s;
    return DC_OK;
}
