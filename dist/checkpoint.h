/*
 * checkpoint.h: crash-safe, verifiable training checkpoints for stage 1 and stage 2 (cRT, LWS).
 *
 * The llm.c protocol (model file, state file, then a DONE marker after a barrier; resume from the newest
 * DONE), with three additions: every file is written atomically (core/atomic_file.h), every tensor carries a
 * CRC32 checked on load, and the DONE marker records the sizes and whole-file CRC32s of the two files, so a
 * checkpoint whose files were truncated or damaged after the fact is never taken as complete.
 *
 * A checkpoint of global step S in directory DIR (usually log_dir/checkpoints):
 *
 *   model_<S:08d>.safetensors  the state_dict, PyTorch names (core/net.h), loadable as plain weights:
 *                              params, BN running statistics, num_batches_tracked.
 *   state_<S:08d>.safetensors  "optimizer.momentum.<param name>" per parameter (the SGD momentum slab cut at
 *                              the parameters), "extra.<name>" for caller state outside the net (LWS
 *                              scales), optionally "rank_buffers" [world, n_buffers] (every rank's BN running
 *                              statistics), and __metadata__ holding dc_train_state.
 *   DONE_<S:08d>               text, written last: the two file names, byte sizes and CRC32s.
 *
 * Both safetensors files hold "crc32.<tensor name>" -> 8 hex digits (zlib crc32 of the tensor's bytes, taken
 * from memory before writing) in their __metadata__. docs/CHECKPOINTS.md ("Training checkpoints") has the
 * layout, the metadata keys and the recovery rules.
 *
 * Collective protocol. None of these functions communicates; the caller adds the collectives:
 *
 *   saving, every Nth step (all ranks take the branch):
 *     [per-rank BN only] gather every rank's net->buffers to rank 0         (collective, all ranks)
 *     rank 0:      rc = dc_ckpt_write(dir, net, sgd, &state, &extra)       (model + state, fsynced, verified)
 *     all ranks:   if (dc_comm_any(comm, rc != DC_OK)) -> report, skip this checkpoint   (the barrier)
 *     rank 0:      rc = dc_ckpt_commit(dir, S, keep_last, &warnings)       (DONE marker, then pruning)
 *     all ranks:   dc_comm_any(comm, rc != DC_OK)
 *   resuming (--resume auto):
 *     rank 0:      rc = dc_ckpt_find_latest(dir, &S, &warnings); print the warnings
 *     all ranks:   broadcast rc and S; DC_CKPT_NONE -> start fresh on every rank
 *     all ranks:   rc = dc_ckpt_load(dir, S, net, sgd, &opts, &state, &warnings)   (opts.rank = own rank;
 *                  the directory must be visible to every rank, as the data is), then dc_comm_any(rc)
 *
 * Bit-exact resume: parameters, BN buffers and counters, the momentum slab and the optimizer's step count are
 * restored exactly; the sampler and every random stream (core/rng.h) are pure functions of (seed, epoch,
 * position), so `step` is the whole sampler and RNG state; the learning rate is a pure function of the step.
 */
#ifndef DC_CHECKPOINT_H
#define DC_CHECKPOINT_H

#include "core/net.h"
#include "core/optim.h"
#include "core/tensor.h"

#include <stddef.h>
#include <stdint.h>

#define DC_CKPT_FORMAT_VERSION 1

/* Statuses besides DC_OK (0) and DC_FAIL (-1). */
#define DC_CKPT_NONE           1    /* find_latest: no complete checkpoint (or no directory): start fresh */
#define DC_CKPT_CONFIG_CHANGED (-2) /* load: the checkpoint's config hash differs from the expected one */

/* Everything besides tensors that a bit-exact resume needs, stored as __metadata__ of the state file. */
typedef struct {
    int64_t step;  /* optimizer steps done = global batches consumed; training resumes at batch `step` */
    int64_t epoch; /* sampler position of the next batch: step / steps_per_epoch ... */
    int64_t step_in_epoch;   /* ... and step % steps_per_epoch (checked on load when steps_per_epoch > 0) */
    int64_t steps_per_epoch; /* 0: unknown (no consistency check) */
    uint64_t seed;        /* the run seed: keys every counter-based RNG stream (no generator state exists) */
    uint64_t config_hash; /* dc_config_hash of the effective config */
    int world_size;       /* ranks that trained (informational; per-rank BN rows need the same world) */
    char stage[16];       /* "stage1" | "crt" | "lws" */
    double train_seconds; /* wall time spent training so far (for the log and ETA) */
    /* filled by the writer from the net and optimizer (ignored on input): */
    int64_t optimizer_step; /* dc_sgd.step (decides the momentum initialisation on the first update) */
    char arch[64];          /* net->desc.arch */
    int num_classes;        /* net->desc.num_classes */
    int64_t n_params;       /* net->n_params */
} dc_train_state;

/* Messages for the caller to print (skipped checkpoints, removed leftovers). Fixed size: no allocation. */
#define DC_CKPT_MAX_WARNINGS 32
typedef struct {
    int n;       /* lines stored */
    int dropped; /* lines that did not fit */
    char line[DC_CKPT_MAX_WARNINGS][600];
} dc_ckpt_warnings;

void dc_ckpt_warnings_clear(dc_ckpt_warnings *w);

/* Optional state outside the net, saved in the state file. */
typedef struct {
    const dc_tensor *tensors; /* e.g. LWS scales and their momentum; stored as "extra.<name>" */
    int n_tensors;
    const float *rank_buffers; /* NULL, or [world][net->n_buffers]: every rank's BN running statistics */
    int world;
} dc_ckpt_extra;

/* Options of dc_ckpt_load; NULL means: no config or stage check, rank 0 of 1, no extras. */
typedef struct {
    int check_config_hash; /* refuse (DC_CKPT_CONFIG_CHANGED) when the stored hash differs from ... */
    uint64_t config_hash;  /* ... this one */
    const char *stage;     /* NULL, or the stage the job runs: a checkpoint of another stage is an error */
    int rank, world;       /* picks this rank's row of "rank_buffers" when the world sizes agree */
    dc_tensor *extra;      /* restored from "extra.<name>" (dtype and shape must match) */
    int n_extra;
} dc_ckpt_load_opts;

/* "<dir>/<kind>_<step:08d>[.safetensors]" for kind "model", "state" or "DONE". DC_FAIL when it does not fit.
 */
int dc_ckpt_path(char *buf, size_t cap, const char *dir, const char *kind, int64_t step);

/* Rank 0. Creates dir (and parents) if needed and writes both files, each atomically and fsynced, under
 * staging names ("<file>.tmp.staged"); only when both exist does it remove a DONE_<S> of the same step and
 * rename them into place. On failure (EACCES, ENOSPC, EFBIG, ...) the message names the path, no new file is
 * left behind and every existing checkpoint, one of the same step included, is untouched. sgd may be NULL
 * (no momentum saved), extra may be NULL. */
int dc_ckpt_write(const char *dir, const dc_net *net, const dc_sgd *sgd, const dc_train_state *state,
                  const dc_ckpt_extra *extra);

/* Rank 0, after every rank agreed the write succeeded. Reads both files back (size, whole-file CRC32, every
 * tensor's CRC32, the step in the metadata), writes DONE_<S> atomically, and only then prunes: keeps the
 * keep_last newest complete checkpoints (keep_last <= 0: all), deleting each older one's DONE marker before
 * its files; removes leftovers of interrupted writes (files without a marker, *.tmp.*) and checkpoints NEWER
 * than S (an abandoned timeline after resuming from an older step). Pruning problems become warnings. */
int dc_ckpt_commit(const char *dir, int64_t step, int keep_last, dc_ckpt_warnings *w);

/* dc_ckpt_write + dc_ckpt_commit, for one process (tests, single-rank runs). */
int dc_ckpt_save(const char *dir, const dc_net *net, const dc_sgd *sgd, const dc_train_state *state,
                 const dc_ckpt_extra *extra, int keep_last, dc_ckpt_warnings *w);

/* Checks one checkpoint: the marker parses, both files exist with the recorded sizes and CRC32s. A CRC
 * mismatch is diagnosed down to the tensor whose CRC32 fails. Any rank. */
int dc_ckpt_verify(const char *dir, int64_t step);

/* The newest step whose DONE marker exists and whose files match it. DC_OK and *step; DC_CKPT_NONE when
 * there is none or dir does not exist; DC_FAIL when dir cannot be read. Every skipped checkpoint (with the
 * reason), incomplete newer files and leftover temporary files are reported in w (may be NULL). Any rank. */
int dc_ckpt_find_latest(const char *dir, int64_t *step, dc_ckpt_warnings *w);

/* Rank 0, after resuming from a step that is not the newest complete one (an explicit --resume PATH to an
 * older checkpoint): removes every checkpoint newer than `step` (markers first), so that a later
 * --resume auto cannot pick up the abandoned timeline before the next commit would have removed it. Each
 * removal is reported in w. */
int dc_ckpt_discard_newer(const char *dir, int64_t step, dc_ckpt_warnings *w);

/* Reads and validates the state file's metadata only (no tensors restored). */
int dc_ckpt_read_state(const char *dir, int64_t step, dc_train_state *state);

/* Restores checkpoint S: params, buffers and counters of net; the momentum slab and step of sgd (may be
 * NULL when none was saved); opts->extra; and *state. Verifies the marker, every CRC, the metadata, the
 * config hash and stage (opts), and the names / dtypes / shapes of every tensor against net (all mismatches
 * listed). Nothing is modified unless everything checks out. Errors name the file. DC_CKPT_CONFIG_CHANGED
 * (still filling *state, for the message) when opts->check_config_hash and the hashes differ. Any rank. */
int dc_ckpt_load(const char *dir, int64_t step, dc_net *net, dc_sgd *sgd, const dc_ckpt_load_opts *opts,
                 dc_train_state *state, dc_ckpt_warnings *w);

/* --resume PATH: a checkpoint directory (-> its latest complete step, as find_latest) or one of a
 * checkpoint's files (model_/state_/DONE_<S>) -> its directory and S. dir_out has dir_cap bytes. */
int dc_ckpt_resolve(const char *path, char *dir_out, size_t dir_cap, int64_t *step, dc_ckpt_warnings *w);

#endif /* DC_CHECKPOINT_H */
