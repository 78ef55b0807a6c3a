/*
 * fuzz_checkpoint.c: libFuzzer target for the training-checkpoint reader (dist/checkpoint.c): the DONE
 * marker, the per-file and per-tensor CRC32s, the state metadata, and the restore into a net.
 *
 * A checkpoint is three files in a directory, so the input is cut into them:
 *   byte 0      flags: bit 0 write a DONE marker that matches the two files (their sizes and CRC32s), so the
 *               fuzzer gets past the whole-file check, instead of the marker text from the input;
 *               bit 1 no DONE file; bit 2 no model file; bit 3 no state file; bit 4 restore the optimizer
 *               too; bit 5 require a config hash; bit 6 require stage "stage1"; bit 7 repair the per-tensor
 *               CRC32s of both files (re-parse, recompute, rewrite) so the metadata checks behind them are
 *               reached with any tensor bytes;
 *   byte 1      the step S (files DONE_S, model_S.safetensors, state_S.safetensors; 8 digits);
 *   bytes 2-3   big-endian length of the marker text, bytes 4-5 of the model file; the rest is the state
 * file. Then: dc_ckpt_find_latest, dc_ckpt_verify, dc_ckpt_read_state, dc_ckpt_resolve on the directory and
 * on the marker, and dc_ckpt_load into a 5-tensor net (tests/fuzz/fuzz_ckpt_net.h). Properties: find_latest
 * returns S exactly when verify passes; resolve of the marker gives (dir, S); a failed load names a file and
 * leaves the net and optimizer bit-for-bit unchanged; a successful one restores a state whose step is S.
 */
#include "core/check.h"
#include "core/safetensors.h"
#include "dist/checkpoint.h"
#include "tests/fuzz/fuzz_ckpt_net.h"
#include "tests/fuzz/fuzz_common.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Re-parses a safetensors file and rewrites it with correct "crc32.<name>" metadata (other metadata kept). */
static void repair_crcs(const char *path) {
    dc_st_file f;
    if (dc_st_read(path, &f) != DC_OK) return;
    int n_meta = 0;
    const int cap = f.n_meta + f.n_entries;
    char **keys = calloc((size_t)(cap ? cap : 1), sizeof *keys),
         **vals = calloc((size_t)(cap ? cap : 1), sizeof *vals);
    char(*crcs)[16] = calloc((size_t)(f.n_entries ? f.n_entries : 1), sizeof *crcs);
    char(*names)[DC_TENSOR_NAME + 8] = calloc((size_t)(f.n_entries ? f.n_entries : 1), sizeof *names);
    dc_tensor *ts = calloc((size_t)(f.n_entries ? f.n_entries : 1), sizeof *ts);
    FUZZ_ASSERT(keys && vals && crcs && names && ts);
    for (int m = 0; m < f.n_meta; m++)
        if (strncmp(f.meta_keys[m], "crc32.", 6) != 0)
            keys[n_meta] = f.meta_keys[m], vals[n_meta++] = f.meta_values[m];
    static uint8_t empty[8];
    for (int i = 0; i < f.n_entries; i++) {
        const dc_st_entry *e = &f.entries[i];
        uLong crc = crc32(0L, Z_NULL, 0);
        if (e->end > e->begin) crc = crc32(crc, f.data + e->begin, (uInt)(e->end - e->begin));
        snprintf(crcs[i], sizeof crcs[i], "%08lx", (unsigned long)crc);
        snprintf(names[i], sizeof names[i], "crc32.%s", e->name);
        keys[n_meta] = names[i], vals[n_meta++] = crcs[i];
        memcpy(ts[i].name, e->name, sizeof ts[i].name);
        ts[i].dtype = e->dtype;
        ts[i].ndim = e->ndim;
        memcpy(ts[i].shape, e->shape, sizeof ts[i].shape);
        dc_tensor_set_contiguous(&ts[i]);
        ts[i].data = e->end > e->begin ? f.data + e->begin : empty;
    }
    (void)dc_safetensors_write(path, ts, f.n_entries, (const char *const *)keys, (const char *const *)vals,
                               n_meta);
    free(ts);
    free(names);
    free(crcs);
    free(vals);
    free(keys);
    dc_st_free(&f);
}

static void file_sig(const char *path, uint64_t *size, uint32_t *crc) {
    FILE *f = fopen(path, "rb");
    *size = 0;
    *crc = (uint32_t)crc32(0L, Z_NULL, 0);
    if (!f) return;
    uint8_t buf[4096];
    size_t r;
    uLong c = crc32(0L, Z_NULL, 0);
    while ((r = fread(buf, 1, sizeof buf, f)) > 0) {
        c = crc32(c, buf, (uInt)r);
        *size += r;
    }
    fclose(f);
    *crc = (uint32_t)c;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static fuzz_net fn, snapshot;
    fuzz_net_init(&fn, 1);
    fuzz_bytes in = {data, size};
    const uint8_t flags = fuzz_u8(&in);
    const int64_t step = fuzz_u8(&in);
    const size_t marker_len = fuzz_u16(&in), model_len = fuzz_u16(&in);
    fuzz_bytes marker = fuzz_take(&in, marker_len), model = fuzz_take(&in, model_len), state = in;

    char dir[300], done[400], model_path[400], state_path[400];
    fuzz_path(dir, sizeof dir, "ckpt");
    tu_remove_tree(dir);
    FUZZ_ASSERT(mkdir(dir, 0700) == 0);
    FUZZ_ASSERT(dc_ckpt_path(done, sizeof done, dir, "DONE", step) == DC_OK);
    FUZZ_ASSERT(dc_ckpt_path(model_path, sizeof model_path, dir, "model", step) == DC_OK);
    FUZZ_ASSERT(dc_ckpt_path(state_path, sizeof state_path, dir, "state", step) == DC_OK);
    if (!(flags & 4)) fuzz_write_file(model_path, model.p, model.n);
    if (!(flags & 8)) fuzz_write_file(state_path, state.p, state.n);
    if (flags & 0x80) {
        repair_crcs(model_path);
        repair_crcs(state_path);
    }
    if (!(flags & 2)) {
        if (flags & 1) {
            uint64_t ms, ss;
            uint32_t mc, sc;
            file_sig(model_path, &ms, &mc);
            file_sig(state_path, &ss, &sc);
            char text[512];
            int n = snprintf(text, sizeof text,
                             "decouple checkpoint marker v1\nstep %" PRId64 "\nmodel_%08" PRId64
                             ".safetensors size %" PRIu64 " crc32 %08" PRIx32 "\nstate_%08" PRId64
                             ".safetensors size %" PRIu64 " crc32 %08" PRIx32 "\n",
                             step, step, ms, mc, step, ss, sc);
            fuzz_write_file(done, text, (size_t)n);
        } else {
            fuzz_write_file(done, marker.p, marker.n);
        }
    }

    /* find_latest agrees with verify */
    const int verified = dc_ckpt_verify(dir, step) == DC_OK;
    if (!verified) FUZZ_ASSERT(strstr(dc_last_error(), dir) != NULL);
    dc_ckpt_warnings w;
    dc_ckpt_warnings_clear(&w);
    int64_t found = -1;
    const int rc_find = dc_ckpt_find_latest(dir, &found, &w);
    FUZZ_ASSERT(rc_find == (verified ? DC_OK : DC_CKPT_NONE));
    if (verified) FUZZ_ASSERT(found == step);
    FUZZ_ASSERT(w.n >= 0 && w.n <= DC_CKPT_MAX_WARNINGS);

    /* resolve: the directory and the marker file */
    char rdir[400];
    int64_t rstep = -1;
    dc_ckpt_warnings_clear(&w);
    const int rc_res = dc_ckpt_resolve(dir, rdir, sizeof rdir, &rstep, &w);
    FUZZ_ASSERT(rc_res == (verified ? DC_OK : DC_CKPT_NONE));
    if (!(flags & 2)) {
        FUZZ_ASSERT(dc_ckpt_resolve(done, rdir, sizeof rdir, &rstep, &w) == DC_OK);
        FUZZ_ASSERT(rstep == step && strcmp(rdir, dir) == 0);
    }

    dc_train_state st;
    if (dc_ckpt_read_state(dir, step, &st) == DC_OK)
        FUZZ_ASSERT(st.step == step && st.world_size >= 1 && st.num_classes >= 1);
    else
        FUZZ_ASSERT(strstr(dc_last_error(), dir) != NULL);

    /* the restore: all or nothing */
    memcpy(&snapshot, &fn, sizeof fn);
    dc_ckpt_load_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.world = 1;
    opts.check_config_hash = (flags & 0x20) != 0;
    opts.config_hash = 0x0123456789abcdefull;
    opts.stage = (flags & 0x40) ? "stage1" : NULL;
    dc_ckpt_warnings_clear(&w);
    memset(&st, 0, sizeof st);
    const int rc = dc_ckpt_load(dir, step, &fn.net, (flags & 0x10) ? &fn.sgd : NULL, &opts, &st, &w);
    if (rc == DC_OK) {
        FUZZ_ASSERT(verified && st.step == step);
    } else {
        FUZZ_ASSERT(strstr(dc_last_error(), dir) != NULL);
        FUZZ_ASSERT(memcmp(fn.params, snapshot.params, sizeof fn.params) == 0);
        FUZZ_ASSERT(memcmp(fn.buffers, snapshot.buffers, sizeof fn.buffers) == 0);
        FUZZ_ASSERT(memcmp(fn.counters, snapshot.counters, sizeof fn.counters) == 0);
        FUZZ_ASSERT(memcmp(fn.momentum, snapshot.momentum, sizeof fn.momentum) == 0);
        FUZZ_ASSERT(fn.sgd.step == snapshot.sgd.step);
    }
    return 0;
}
