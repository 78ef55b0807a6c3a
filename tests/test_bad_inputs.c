/*
 * test_bad_inputs.c: the library-level rows of the bad-input matrix (docs/BAD_INPUTS.md) that the per-format
 * tests (test_config, test_list_file, test_datasets, test_jpeg, test_safetensors, test_npy, test_checkpoint)
 * do not already cover. Each row is one input kind x one fault, and each check asserts the documented
 * behaviour: DC_FAIL (never a crash), a message naming the file and the line, key, record or tensor, and,
 * where the matrix says so, that nothing was modified or allocated.
 *
 *  - permission denied, for every reader (config, list, class names, IDX, CIFAR, a JPEG of a list dataset,
 *    safetensors, npy, a checkpoint) and for the writers (npy, safetensors, config.yaml): as root, file modes
 *    do not apply, so these run in a child that drops to uid/gid 65534 (nobody); skipped with a note when the
 *    child cannot do so. They run first, before the parent has started any OpenMP thread (a forked child
 *    of a process with a running OpenMP pool must not use OpenMP).
 *  - config: a file over 4 MiB; dc_config_load_buffer gives the same config and the same messages (with
 *    line numbers) as dc_config_load; "disk full" while writing config.yaml keeps the previous file whole.
 *  - list file: the derived class count is bounded (the fuzz finding: "a.jpg 999999919" made every caller
 *    allocate per-class arrays of a billion entries).
 *  - IDX: a header declaring 1.7 TB of pixels in a 100-byte file fails as "truncated" without allocating
 *    the declared size (fuzz finding); implausible dimensions; a corrupted gzip stream.
 *  - CIFAR: a corrupted gzip stream; a gzip stream that decompresses to a non-multiple of the record size.
 *  - JPEG in a list dataset: an empty file and a directory in place of the image, named with the list line;
 *    a valid progressive file without its AC scans decodes to the same pixels whatever the random crop
 *    (fuzz finding: libjpeg's block smoothing made the partial decode differ).
 *  - safetensors: invalid UTF-8 in a metadata value.
 *  - checkpoint: a DONE marker over 4 KiB or with NUL bytes; state metadata with an out-of-range integer or
 *    invalid UTF-8 (files and marker otherwise consistent, so the metadata check itself is what fails).
 *  - npy: "disk full" (RLIMIT_FSIZE -> EFBIG) while writing keeps the previous file.
 */
#define _GNU_SOURCE /* memmem */
#include "core/atomic_file.h"
#include "core/check.h"
#include "core/config.h"
#include "core/npy.h"
#include "core/safetensors.h"
#include "datasets/dataset.h"
#include "datasets/dataset_internal.h"
#include "datasets/image.h"
#include "dist/checkpoint.h"
#include "tests/fuzz/fuzz_ckpt_net.h"
#include "tests/testutil.h"

#include <dirent.h>
#include <jpeglib.h>
#include <grp.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

static char tmp[256];

static int has(const char *needle) {
    return strstr(dc_last_error(), needle) != NULL;
}

#define EXPECT_ERR(expr, n1, n2)                                                                             \
    do {                                                                                                     \
        dc_clear_error();                                                                                    \
        int rc_ = (expr);                                                                                    \
        EXPECTF(rc_ != DC_OK && has(n1) && has(n2), "rc %d, message: %s (wanted '%s' and '%s')", rc_,        \
                dc_last_error(), n1, n2);                                                                    \
    } while (0)

static void spit(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    REQUIRE(f != NULL);
    REQUIRE(len == 0 || fwrite(data, 1, len, f) == len);
    REQUIRE(fclose(f) == 0);
}

/* A 1-D float tensor named `name` over data[0..n). */
static dc_tensor f32_vector(const char *name, float *data, int64_t n) {
    dc_tensor t;
    memset(&t, 0, sizeof t);
    snprintf(t.name, sizeof t.name, "%s", name);
    t.dtype = DC_F32, t.ndim = 1, t.shape[0] = n, t.data = data;
    dc_tensor_set_contiguous(&t);
    return t;
}

static void gzip_to(const char *path, const void *data, size_t len) {
    gzFile g = gzopen(path, "wb");
    REQUIRE(g != NULL);
    REQUIRE(gzwrite(g, data, (unsigned)len) == (int)len);
    REQUIRE(gzclose(g) == Z_OK);
}

static void be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}

/* An IDX images file: n images of rows x cols, `have` pixel bytes actually present. */
static size_t idx_images(uint8_t *buf, uint32_t n, uint32_t rows, uint32_t cols, size_t have) {
    be32(buf, 0x803), be32(buf + 4, n), be32(buf + 8, rows), be32(buf + 12, cols);
    for (size_t k = 0; k < have; k++) buf[16 + k] = (uint8_t)(k * 31);
    return 16 + have;
}

static size_t idx_labels(uint8_t *buf, uint32_t n) {
    be32(buf, 0x801), be32(buf + 4, n);
    for (uint32_t k = 0; k < n; k++) buf[8 + k] = (uint8_t)(k % 10);
    return 8 + n;
}

/* Runs fn in a child with uid/gid nobody; returns 1 when it passed, 0 when it failed, -1 when skipped. */
static int as_nobody(const char *what, void (*fn)(void)) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0))
            _exit(77);
        fn();
        fflush(stdout);
        fflush(stderr);
        _exit(tu_failures ? 1 : 0);
    }
    int status = 0;
    REQUIRE(waitpid(pid, &status, 0) == pid);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 77) {
        printf("note: %s: cannot drop privileges to nobody; skipped\n", what);
        return -1;
    }
    EXPECTF(WIFEXITED(status) && WEXITSTATUS(status) == 0, "%s: child status %d", what, status);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

/* A list dataset of two 8x8 JPEGs in dir: "a.jpg 0", "<second> 1". */
static dc_training_opt jpeg_list(const char *dir, const char *second) {
    char path[600];
    uint8_t pix[8 * 8 * 3];
    for (int k = 0; k < (int)sizeof pix; k++) pix[k] = (uint8_t)(k * 5);
    dc_image img = {8, 8, 3, pix, sizeof pix};
    uint8_t *jpg = NULL;
    size_t n = 0;
    REQUIRE(dc_jpeg_encode(&img, 90, &jpg, &n) == DC_OK);
    snprintf(path, sizeof path, "%s/a.jpg", dir);
    spit(path, jpg, n);
    snprintf(path, sizeof path, "%s/b.jpg", dir);
    spit(path, jpg, n);
    free(jpg);
    snprintf(path, sizeof path, "%s/train.txt", dir);
    char text[300];
    snprintf(text, sizeof text, "a.jpg 0\n%s 1\n", second);
    spit(path, text, strlen(text));
    dc_training_opt o;
    memset(&o, 0, sizeof o);
    snprintf(o.dataset, sizeof o.dataset, "list");
    snprintf(o.data_root, sizeof o.data_root, "%s", dir);
    snprintf(o.train_list, sizeof o.train_list, "train.txt");
    o.in_channels = 3, o.image_size = 8, o.num_classes = 2;
    for (int c = 0; c < DC_MAX_CHANNELS; c++) o.mean[c] = 0.5f, o.std[c] = 0.25f;
    o.imb_factor = 1, o.step_minor_frac = 0.5, o.decode_threads = 1;
    return o;
}

/* A complete checkpoint of the 5-tensor test net (tests/fuzz/fuzz_ckpt_net.h) at `step` in dir. */
static fuzz_net ckpt_net;
static void make_checkpoint(const char *dir, int64_t step) {
    fuzz_net_init(&ckpt_net, 1);
    dc_train_state st;
    memset(&st, 0, sizeof st);
    st.step = step, st.epoch = 1, st.step_in_epoch = step - 4, st.steps_per_epoch = 4;
    st.seed = 9, st.config_hash = 0x1122334455667788ull, st.world_size = 1, st.train_seconds = 2;
    snprintf(st.stage, sizeof st.stage, "stage1");
    REQUIRE(dc_ckpt_save(dir, &ckpt_net.net, &ckpt_net.sgd, &st, NULL, 0, NULL) == DC_OK);
}

/* ---- permission denied, as nobody ------------------------------------------------------------------------
 */

static char perm[300];

static void perm_readers(void) {
    char p[700], q[1500];
    dc_config cfg;
    dc_config_defaults(&cfg);
    snprintf(p, sizeof p, "%s/secret.yaml", perm);
    EXPECT_ERR(dc_config_load(&cfg, p), p, "cannot open: Permission denied");

    dc_list_file lf;
    snprintf(p, sizeof p, "%s/list.txt", perm);
    EXPECT_ERR(dc_list_file_read(p, 0, &lf), p, "Permission denied");
    int count;
    char **names;
    EXPECT_ERR(dc_class_names_read(p, &count, &names), p, "Permission denied");

    dc_raw_images raw;
    snprintf(p, sizeof p, "%s/images", perm);
    snprintf(q, sizeof q, "%s/labels", perm);
    EXPECT_ERR(dc_idx_load(p, q, 10, &raw), p, "cannot open: Permission denied");
    snprintf(p, sizeof p, "%s/batch.bin", perm);
    const char *paths[1] = {p};
    EXPECT_ERR(dc_cifar_bin_load(paths, 1, 0, &raw), p, "cannot open: Permission denied");

    snprintf(p, sizeof p, "%s/jpg", perm);
    dc_training_opt o;
    memset(&o, 0, sizeof o);
    snprintf(o.dataset, sizeof o.dataset, "list");
    snprintf(o.data_root, sizeof o.data_root, "%s", p);
    snprintf(o.train_list, sizeof o.train_list, "train.txt");
    o.in_channels = 3, o.image_size = 8, o.num_classes = 2, o.imb_factor = 1, o.step_minor_frac = 0.5;
    for (int c = 0; c < DC_MAX_CHANNELS; c++) o.mean[c] = 0.5f, o.std[c] = 0.25f;
    o.decode_threads = 1;
    dc_dataset *ds = NULL;
    snprintf(q, sizeof q, "%s/b.jpg (%s/train.txt:2): cannot open", p, p);
    EXPECT_ERR(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), q, "Permission denied");

    float w[6];
    dc_tensor t = f32_vector("w", w, 6);
    snprintf(p, sizeof p, "%s/w.safetensors", perm);
    EXPECT_ERR(dc_safetensors_load(p, &t, 1, 0), p, "Permission denied");
    dc_npy_array a;
    snprintf(p, sizeof p, "%s/a.npy", perm);
    EXPECT_ERR(dc_npy_read(p, &a), p, "Permission denied");

    /* a checkpoint whose model file cannot be read: find_latest skips it, load names the file */
    snprintf(p, sizeof p, "%s/ckpt", perm);
    snprintf(q, sizeof q, "%s/model_00000005.safetensors", p);
    dc_ckpt_warnings warns;
    dc_ckpt_warnings_clear(&warns);
    int64_t step = -1;
    EXPECT(dc_ckpt_find_latest(p, &step, &warns) == DC_CKPT_NONE);
    EXPECTF(warns.n >= 1 && strstr(warns.line[0], q) && strstr(warns.line[0], "Permission denied"),
            "warning: %s", warns.n ? warns.line[0] : "(none)");
    fuzz_net fresh;
    fuzz_net_init(&fresh, 3);
    const float before = fresh.params[0];
    dc_train_state st;
    EXPECT_ERR(dc_ckpt_load(p, 5, &fresh.net, &fresh.sgd, NULL, &st, NULL), q, "Permission denied");
    EXPECT(fresh.params[0] == before);
}

static void perm_writers(void) {
    char p[600];
    float x[3] = {1, 2, 3};
    int64_t shape[1] = {3};
    snprintf(p, sizeof p, "%s/ro/x.npy", perm);
    EXPECT_ERR(dc_npy_write(p, DC_F32, 1, shape, x), p, "Permission denied");
    dc_tensor t = f32_vector("x", x, 3);
    snprintf(p, sizeof p, "%s/ro/x.safetensors", perm);
    EXPECT_ERR(dc_safetensors_write(p, &t, 1, NULL, NULL, 0), p, "Permission denied");
    dc_config cfg;
    dc_config_defaults(&cfg);
    snprintf(p, sizeof p, "%s/ro/config.yaml", perm);
    EXPECT_ERR(dc_config_write(&cfg, p), p, "Permission denied");
}

static void test_permission_denied(void) {
    char p[600];
    snprintf(perm, sizeof perm, "%s/perm", tmp);
    REQUIRE(mkdir(perm, 0755) == 0);
    const char yaml[] = "seed: 1\n";
    snprintf(p, sizeof p, "%s/secret.yaml", perm);
    spit(p, yaml, sizeof yaml - 1);
    chmod(p, 0);
    snprintf(p, sizeof p, "%s/list.txt", perm);
    spit(p, "a.jpg 0\n", 8);
    chmod(p, 0);
    uint8_t buf[256];
    snprintf(p, sizeof p, "%s/images", perm);
    spit(p, buf, idx_images(buf, 2, 4, 4, 32));
    chmod(p, 0);
    snprintf(p, sizeof p, "%s/labels", perm);
    spit(p, buf, idx_labels(buf, 2));
    snprintf(p, sizeof p, "%s/batch.bin", perm);
    uint8_t rec[3073] = {3};
    spit(p, rec, sizeof rec);
    chmod(p, 0);
    snprintf(p, sizeof p, "%s/jpg", perm);
    REQUIRE(mkdir(p, 0755) == 0);
    (void)jpeg_list(p, "b.jpg");
    snprintf(p, sizeof p, "%s/jpg/b.jpg", perm);
    chmod(p, 0);
    float w[6] = {0};
    dc_tensor t = f32_vector("w", w, 6);
    snprintf(p, sizeof p, "%s/w.safetensors", perm);
    REQUIRE(dc_safetensors_write(p, &t, 1, NULL, NULL, 0) == DC_OK);
    chmod(p, 0);
    snprintf(p, sizeof p, "%s/a.npy", perm);
    REQUIRE(dc_npy_write(p, DC_F32, 1, t.shape, w) == DC_OK);
    chmod(p, 0);
    snprintf(p, sizeof p, "%s/ckpt", perm);
    make_checkpoint(p, 5);
    chmod(p, 0755);
    snprintf(p, sizeof p, "%s/ckpt/model_00000005.safetensors", perm);
    chmod(p, 0);
    snprintf(p, sizeof p, "%s/ro", perm);
    REQUIRE(mkdir(p, 0755) == 0);
    if (geteuid() != 0) chmod(p, 0555); /* already unprivileged: the mode itself must refuse us */
    REQUIRE(chmod(tmp, 0755) == 0);

    if (as_nobody("permission denied (readers)", perm_readers) > 0)
        printf("ok: permission denied: config, list, class names, IDX, CIFAR, JPEG, safetensors, npy, "
               "checkpoint name the file\n");
    if (as_nobody("permission denied (writers)", perm_writers) > 0)
        printf("ok: permission denied: npy, safetensors, config.yaml writes name the path\n");
    if (geteuid() != 0) chmod(p, 0755);
    snprintf(p, sizeof p, "%s/ro", perm);
    DIR *d = opendir(p);
    REQUIRE(d != NULL);
    int leftovers = 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;) leftovers += de->d_name[0] != '.';
    closedir(d);
    EXPECTF(leftovers == 0, "%d files left in a directory every write was refused", leftovers);
}

/* ---- config ----------------------------------------------------------------------------------------------
 */

static void test_config(void) {
    char p[600];
    /* over 4 MiB: refused before parsing */
    snprintf(p, sizeof p, "%s/big.yaml", tmp);
    size_t big = (4u << 20) + 1;
    char *text = malloc(big);
    REQUIRE(text != NULL);
    memset(text, '#', big);
    spit(p, text, big);
    dc_config cfg, ref;
    dc_config_defaults(&cfg);
    EXPECT_ERR(dc_config_load(&cfg, p), p, "larger than 4194304 bytes; not a config file");
    EXPECT_ERR(dc_config_load_buffer(&cfg, text, big, "mem.yaml"), "mem.yaml", "larger than 4194304 bytes");
    free(text);

    /* load_buffer == load: the same struct, the same message with the same line */
    const char good[] = "seed: 3\ntraining_opt:\n  batch_size: 64\n  mean: [0.5]\n";
    snprintf(p, sizeof p, "%s/good.yaml", tmp);
    spit(p, good, sizeof good - 1);
    dc_config_defaults(&cfg);
    dc_config_defaults(&ref);
    REQUIRE(dc_config_load(&ref, p) == DC_OK);
    REQUIRE(dc_config_load_buffer(&cfg, good, sizeof good - 1, p) == DC_OK);
    EXPECT(memcmp(&cfg, &ref, sizeof cfg) == 0 && cfg.training_opt.batch_size == 64 &&
           cfg.training_opt.seed == 3);
    const char bad[] = "seed: 3\ntraining_opt:\n  batch_size: 64\n  bach_size: 2\n";
    snprintf(p, sizeof p, "%s/bad.yaml", tmp);
    spit(p, bad, sizeof bad - 1);
    char from_file[1024];
    REQUIRE(dc_config_load(&ref, p) == DC_FAIL);
    snprintf(from_file, sizeof from_file, "%s", dc_last_error());
    REQUIRE(dc_config_load_buffer(&cfg, bad, sizeof bad - 1, p) == DC_FAIL);
    EXPECTF(strcmp(from_file, dc_last_error()) == 0 && has(":4: training_opt.bach_size"), "'%s' vs '%s'",
            from_file, dc_last_error());
    EXPECT(memcmp(&cfg, &ref, sizeof cfg) == 0); /* a failed load changes nothing */
    /* not NUL-terminated: only len bytes are read */
    char unterminated[8];
    memcpy(unterminated, "seed: 77", 8);
    dc_config_defaults(&cfg);
    REQUIRE(dc_config_load_buffer(&cfg, unterminated, 7, "mem") == DC_OK);
    EXPECT(cfg.training_opt.seed == 7);

    /* disk full while writing config.yaml: the previous file stays whole (it is replaced atomically) */
    snprintf(p, sizeof p, "%s/config.yaml", tmp);
    dc_config_defaults(&cfg);
    REQUIRE(dc_config_write(&cfg, p) == DC_OK);
    size_t n_before;
    uint8_t *before = tu_slurp_required(p, &n_before);
    struct rlimit old_limit, small;
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    small = old_limit;
    small.rlim_cur = 512;
    snprintf(cfg.training_opt.log_dir, sizeof cfg.training_opt.log_dir, "changed");
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    dc_clear_error();
    int rc = dc_config_write(&cfg, p);
    REQUIRE(setrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    signal(SIGXFSZ, old_handler);
    EXPECTF(rc == DC_FAIL && has(p) && has(strerror(EFBIG)), "%s", dc_last_error());
    size_t n_after;
    uint8_t *after = tu_slurp_required(p, &n_after);
    EXPECT(n_after == n_before && memcmp(before, after, n_before) == 0);
    free(before);
    free(after);
}

/* ---- list file -------------------------------------------------------------------------------------------
 */

static void test_list_file(void) {
    dc_list_file lf;
    /* the fuzz finding: one label makes the derived class count a billion */
    const char huge[] = "a.jpg 0\nb.jpg 999999919\n";
    EXPECT_ERR(dc_list_file_parse(huge, sizeof huge - 1, "x.txt", 0, &lf), "x.txt:2: label 999999919",
               "at most 1000000 classes");
    EXPECT(lf.n == 0 && lf.text == NULL);
    const char edge[] = "a.jpg 999999\n";
    REQUIRE(dc_list_file_parse(edge, sizeof edge - 1, "x.txt", 0, &lf) == DC_OK);
    EXPECT(lf.num_classes == 1000000);
    dc_list_file_free(&lf);
    EXPECT_ERR(dc_list_file_parse(huge, sizeof huge - 1, "x.txt", 5, &lf), "x.txt:2:", "out of range [0, 5)");
}

/* ---- IDX and CIFAR ---------------------------------------------------------------------------------------
 */

/* Flips one byte in the middle of a file (inside the compressed stream of a .gz). */
static void flip_middle(const char *path) {
    size_t n;
    uint8_t *p = tu_slurp_required(path, &n);
    p[n / 2] ^= 0xff;
    spit(path, p, n);
    free(p);
}

static void test_idx(void) {
    char ip[600], lp[600];
    snprintf(ip, sizeof ip, "%s/i-idx3", tmp);
    snprintf(lp, sizeof lp, "%s/l-idx1", tmp);
    static uint8_t buf[1 << 16];
    dc_raw_images raw;
    /* a header declaring 2^31 - 1 images of 28 x 28 (1.7 TB) in a 100-byte file: "truncated", nothing
     * allocated */
    spit(ip, buf, idx_images(buf, 0x7fffffff, 28, 28, 84));
    spit(lp, buf, idx_labels(buf, 3));
    EXPECT_ERR(dc_idx_load(ip, lp, 10, &raw), ip,
               "truncated: expected 1683627179248 bytes of pixels (2147483647 images of 28x28), read 84");
    EXPECT(raw.pix == NULL && raw.n == 0);
    /* implausible geometry */
    spit(ip, buf, idx_images(buf, 3, 0, 28, 0));
    EXPECT_ERR(dc_idx_load(ip, lp, 10, &raw), ip, "implausible dimensions 3 x 0 x 28");
    spit(ip, buf, idx_images(buf, 3, 5000, 2, 0));
    EXPECT_ERR(dc_idx_load(ip, lp, 10, &raw), ip, "implausible dimensions 3 x 5000 x 2");
    /* a corrupted gzip stream (one byte flipped in the compressed data): the file is named, zlib says why */
    size_t n = idx_images(buf, 60, 28, 28, 60 * 784);
    for (size_t k = 16; k < n; k++) buf[k] = (uint8_t)((k * 2654435761u) >> 24); /* incompressible-ish */
    snprintf(ip, sizeof ip, "%s/i-idx3.gz", tmp);
    gzip_to(ip, buf, n);
    REQUIRE(dc_idx_load(ip, lp, 10, &raw) == DC_FAIL && has("3 labels")); /* the intact file parses */
    flip_middle(ip);
    EXPECT_ERR(dc_idx_load(ip, lp, 10, &raw), ip, "corrupt");
    EXPECTF(has("zlib:"), "%s", dc_last_error());
}

static void test_cifar(void) {
    char p[600];
    static uint8_t recs[3 * 3073];
    for (size_t k = 0; k < sizeof recs; k++) recs[k] = (uint8_t)((k * 2654435761u) >> 24);
    for (int r = 0; r < 3; r++) recs[r * 3073] = (uint8_t)r;
    snprintf(p, sizeof p, "%s/data_batch.bin.gz", tmp);
    const char *paths[1] = {p};
    dc_raw_images raw;
    gzip_to(p, recs, sizeof recs);
    REQUIRE(dc_cifar_bin_load(paths, 1, 0, &raw) == DC_OK && raw.n == 3);
    dc_raw_images_free(&raw);
    flip_middle(p);
    EXPECT_ERR(dc_cifar_bin_load(paths, 1, 0, &raw), p, "corrupt gzip data");
    EXPECT(raw.pix == NULL && raw.n == 0);
    /* a valid gzip stream of 2.5 records */
    gzip_to(p, recs, 3073 * 2 + 1500);
    EXPECT_ERR(dc_cifar_bin_load(paths, 1, 0, &raw), p, "2 whole records and 1500 bytes more");
}

/* ---- JPEG files of a list dataset ------------------------------------------------------------------------
 */

static void test_jpeg_files(void) {
    char dir[600], p[700], want[1600];
    snprintf(dir, sizeof dir, "%s/jpegs", tmp);
    REQUIRE(mkdir(dir, 0755) == 0);
    dc_training_opt o = jpeg_list(dir, "b.jpg");
    snprintf(p, sizeof p, "%s/b.jpg", dir);
    spit(p, "", 0);
    dc_dataset *ds = NULL;
    snprintf(want, sizeof want, "%s (%s/train.txt:2): empty file", p, dir);
    EXPECT_ERR(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), want, "empty");
    REQUIRE(unlink(p) == 0 && mkdir(p, 0755) == 0);
    snprintf(want, sizeof want, "%s (%s/train.txt:2): not a regular file", p, dir);
    EXPECT_ERR(dc_dataset_open(&o, DC_SPLIT_TRAIN, &ds), want, "regular");
    rmdir(p);
}

/* A valid progressive JPEG that stops after its first (DC) scan: what a progressive file is when an encoder
 * or a broken copy leaves out the later scans but keeps the end marker. */
static uint8_t *dc_only_progressive(int w, int h, size_t *len) {
    struct jpeg_compress_struct ci;
    struct jpeg_error_mgr je;
    ci.err = jpeg_std_error(&je);
    jpeg_create_compress(&ci);
    unsigned char *dest = NULL;
    unsigned long size = 0;
    jpeg_mem_dest(&ci, &dest, &size);
    ci.image_width = (JDIMENSION)w, ci.image_height = (JDIMENSION)h;
    ci.input_components = 3, ci.in_color_space = JCS_RGB;
    jpeg_set_defaults(&ci);
    static jpeg_scan_info dc_scan = {3, {0, 1, 2, 0}, 0, 0, 0, 0};
    ci.scan_info = &dc_scan;
    ci.num_scans = 1;
    jpeg_start_compress(&ci, TRUE);
    uint8_t *row = malloc((size_t)w * 3);
    while (ci.next_scanline < ci.image_height) {
        for (int x = 0; x < w * 3; x++)
            row[x] = (uint8_t)((x * 37 + (int)ci.next_scanline * 91 + x * x) & 255);
        JSAMPROW r = row;
        jpeg_write_scanlines(&ci, &r, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    free(row);
    *len = size;
    return dest;
}

static void test_jpeg_incomplete_progressive(void) {
    size_t len;
    uint8_t *jpg = dc_only_progressive(96, 72, &len);
    dc_training_opt o;
    memset(&o, 0, sizeof o);
    o.augment = DC_AUG_IMAGENET, o.image_size = 40,
    o.in_channels = 3; /* 40 > 72 / 2: decoded at full scale */
    for (int c = 0; c < 3; c++) o.mean[c] = 0.5f, o.std[c] = 0.25f;
    dc_transform t;
    dc_transform_from_config(&o, &t);
    dc_image whole = {0}, img = {0};
    REQUIRE(dc_jpeg_decode(jpg, len, "dc_only.jpg", dc_transform_min_side(&t, 1), 3, &whole) == DC_OK);
    void *scratch = NULL, *s2 = malloc(dc_transform_scratch_bytes(&t, &whole));
    size_t cap = 0;
    static float fused[3 * 40 * 40], two_step[3 * 40 * 40];
    int same = 0;
    for (uint64_t key = 1; key <= 64; key++) {
        REQUIRE(dc_jpeg_decode_transform(jpg, len, "dc_only.jpg", &t, 1, key, &img, &scratch, &cap, fused) ==
                DC_OK);
        REQUIRE(dc_transform_apply(&t, &whole, 1, key, two_step, s2) == DC_OK);
        same += memcmp(fused, two_step, sizeof fused) == 0;
    }
    /* the fuzz finding: libjpeg's block smoothing made the cropped decode differ at the crop edges */
    EXPECTF(same == 64, "%d of 64 random crops of a DC-only progressive file match the full decode", same);
    free(s2);
    free(scratch);
    dc_image_free(&img);
    dc_image_free(&whole);
    free(jpg);
}

/* ---- safetensors -----------------------------------------------------------------------------------------
 */

static void test_safetensors(void) {
    const char hdr[] = "{\"__metadata__\":{\"note\":\"caf\xe9\"}}";
    uint8_t file[64];
    uint64_t hl = sizeof hdr - 1;
    for (int k = 0; k < 8; k++) file[k] = (uint8_t)(hl >> (8 * k));
    memcpy(file + 8, hdr, hl);
    dc_st_file f;
    EXPECT_ERR(dc_st_parse(file, 8 + hl, "meta.safetensors", &f), "meta.safetensors", "UTF-8");
}

/* ---- checkpoints -----------------------------------------------------------------------------------------
 */

/* Rewrites DONE_<step> so that it matches the files on disk (as if they had been written that way). */
static void rewrite_marker(const char *dir, int64_t step) {
    char path[600], text[600];
    uint64_t size[2];
    uint32_t crc[2];
    const char *kinds[2] = {"model", "state"};
    for (int k = 0; k < 2; k++) {
        REQUIRE(dc_ckpt_path(path, sizeof path, dir, kinds[k], step) == DC_OK);
        size_t n;
        uint8_t *p = tu_slurp_required(path, &n);
        size[k] = n;
        crc[k] = (uint32_t)crc32(crc32(0L, Z_NULL, 0), p, (uInt)n);
        free(p);
    }
    snprintf(text, sizeof text,
             "decouple checkpoint marker v1\nstep %" PRId64 "\nmodel_%08" PRId64 ".safetensors size %" PRIu64
             " crc32 %08" PRIx32 "\nstate_%08" PRId64 ".safetensors size %" PRIu64 " crc32 %08" PRIx32 "\n",
             step, step, size[0], crc[0], step, size[1], crc[1]);
    REQUIRE(dc_ckpt_path(path, sizeof path, dir, "DONE", step) == DC_OK);
    spit(path, text, strlen(text));
}

/* Sets one metadata value of the state file (tensors and their CRCs unchanged), then fixes the marker. */
static void set_state_meta(const char *dir, int64_t step, const char *key, const char *value) {
    char path[600];
    REQUIRE(dc_ckpt_path(path, sizeof path, dir, "state", step) == DC_OK);
    dc_st_file f;
    REQUIRE(dc_st_read(path, &f) == DC_OK);
    dc_tensor *ts = calloc((size_t)f.n_entries, sizeof *ts);
    const char **vals = calloc((size_t)f.n_meta, sizeof *vals);
    REQUIRE(ts && vals);
    for (int i = 0; i < f.n_entries; i++) {
        const dc_st_entry *e = &f.entries[i];
        memcpy(ts[i].name, e->name, sizeof ts[i].name);
        ts[i].dtype = e->dtype, ts[i].ndim = e->ndim;
        memcpy(ts[i].shape, e->shape, sizeof ts[i].shape);
        dc_tensor_set_contiguous(&ts[i]);
        ts[i].data = f.data + e->begin;
    }
    int found = 0;
    for (int m = 0; m < f.n_meta; m++) {
        vals[m] = f.meta_values[m];
        if (!strcmp(f.meta_keys[m], key)) vals[m] = value, found = 1;
    }
    REQUIRE(found);
    REQUIRE(dc_safetensors_write(path, ts, f.n_entries, (const char *const *)f.meta_keys, vals, f.n_meta) ==
            DC_OK);
    free(vals);
    free(ts);
    dc_st_free(&f);
    rewrite_marker(dir, step);
}

static void test_checkpoint(void) {
    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/ckpt", tmp);
    make_checkpoint(dir, 5);
    fuzz_net fresh;
    dc_train_state st;
    REQUIRE(dc_ckpt_path(path, sizeof path, dir, "DONE", 5) == DC_OK);
    size_t n;
    uint8_t *good = tu_slurp_required(path, &n);

    /* a marker over 4 KiB, a marker with a NUL byte: not markers; find_latest skips them */
    char *big = malloc(5000);
    memcpy(big, good, n);
    memset(big + n, '\n', 5000 - n);
    spit(path, big, 5000);
    free(big);
    EXPECT_ERR(dc_ckpt_verify(dir, 5), path, "larger than 4096 bytes: not a checkpoint marker");
    int64_t step = -1;
    EXPECT(dc_ckpt_find_latest(dir, &step, NULL) == DC_CKPT_NONE);
    uint8_t *nul = malloc(n);
    memcpy(nul, good, n);
    nul[10] = 0;
    spit(path, nul, n);
    free(nul);
    EXPECT_ERR(dc_ckpt_verify(dir, 5), path, "contains NUL bytes");
    spit(path, good, n);
    free(good);
    EXPECT(dc_ckpt_find_latest(dir, &step, NULL) == DC_OK && step == 5);

    /* huge and non-UTF-8 metadata values in a checkpoint that is otherwise consistent */
    char state[700];
    REQUIRE(dc_ckpt_path(state, sizeof state, dir, "state", 5) == DC_OK);
    set_state_meta(dir, 5, "world_size", "4294967296");
    fuzz_net_init(&fresh, 4);
    EXPECT_ERR(dc_ckpt_load(dir, 5, &fresh.net, &fresh.sgd, NULL, &st, NULL), state,
               "\"world_size\": 4294967296 is outside [1, 2147483647]");
    EXPECT_ERR(dc_ckpt_read_state(dir, 5, &st), state, "world_size");
    set_state_meta(dir, 5, "epoch", "99999999999999999999999");
    EXPECT_ERR(dc_ckpt_load(dir, 5, &fresh.net, &fresh.sgd, NULL, &st, NULL), state, "out of range");
    set_state_meta(dir, 5, "arch", "QQQQ");
    size_t sn;
    uint8_t *sb = tu_slurp_required(state, &sn);
    uint8_t *q = memmem(sb, sn, "QQQQ", 4);
    REQUIRE(q != NULL);
    memcpy(q, "\xff\xfe\xfd\xfc", 4);
    spit(state, sb, sn);
    free(sb);
    rewrite_marker(dir, 5);
    EXPECT_ERR(dc_ckpt_load(dir, 5, &fresh.net, &fresh.sgd, NULL, &st, NULL), state, "UTF-8");
    fuzz_net_init(&ckpt_net, 4); /* nothing was restored by any of these loads */
    EXPECT(memcmp(fresh.params, ckpt_net.params, sizeof fresh.params) == 0 &&
           memcmp(fresh.momentum, ckpt_net.momentum, sizeof fresh.momentum) == 0);
}

/* ---- npy: disk full -------------------------------------------------------------------------------------
 */

static void test_npy_disk_full(void) {
    char p[600];
    snprintf(p, sizeof p, "%s/features.npy", tmp);
    float small_x[4] = {1, 2, 3, 4};
    int64_t s4[1] = {4};
    REQUIRE(dc_npy_write(p, DC_F32, 1, s4, small_x) == DC_OK);
    int64_t sbig[1] = {100000};
    float *x = calloc(100000, sizeof(float));
    struct rlimit old_limit, small;
    REQUIRE(getrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
    small = old_limit;
    small.rlim_cur = 65536;
    REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
    dc_clear_error();
    int rc = dc_npy_write(p, DC_F32, 1, sbig, x);
    REQUIRE(setrlimit(RLIMIT_FSIZE, &old_limit) == 0);
    signal(SIGXFSZ, old_handler);
    free(x);
    EXPECTF(rc == DC_FAIL && has(p) && has(strerror(EFBIG)), "%s", dc_last_error());
    dc_npy_array a;
    REQUIRE(dc_npy_read(p, &a) == DC_OK);
    EXPECT(a.ndim == 1 && a.shape[0] == 4 && memcmp(a.data, small_x, sizeof small_x) == 0);
    dc_npy_free(&a);
}

int main(void) {
    snprintf(tmp, sizeof tmp, "/tmp/dc_test_bad_inputs_XXXXXX");
    REQUIRE(mkdtemp(tmp) != NULL);
    test_permission_denied(); /* first: forks, before any OpenMP thread exists */
    test_config();
    test_list_file();
    test_idx();
    test_cifar();
    test_jpeg_files();
    test_jpeg_incomplete_progressive();
    test_safetensors();
    test_checkpoint();
    test_npy_disk_full();
    tu_remove_tree(tmp);
    return tu_finish("test_bad_inputs");
}
