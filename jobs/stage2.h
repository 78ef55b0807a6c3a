/*
 * stage2.h: the decoupled classifier stage (heads) and the evaluation, shared by `decouple run` and
 * `decouple heads`.
 */
#ifndef DC_STAGE2_H
#define DC_STAGE2_H

#include "heads/metrics.h"
#include "job.h"

#define DC_STAGE2_MAX_HEADS 8

typedef struct {
    /* in: */
    double stage1_seconds; /* for results.json (0 when stage 1 did not run in this job) */
    const char *heads_dir; /* NULL: fit the heads; else load log_dir-style head_<name>.safetensors from here
                              (`decouple eval`) */
    /* out: */
    double stage2_seconds;
    char tau_split[64];
    char train_desc[512], test_desc[512];
    char weights_path[DC_PATH_MAX + 64];
    int n_heads;
    char head_names[DC_STAGE2_MAX_HEADS][16];
    dc_metrics_summary test[DC_STAGE2_MAX_HEADS];
} dc_stage2_info;

/* Extracts features with the stage-1 weights, fits every configured head, evaluates them on test (and val),
 * and writes log_dir/results.json, log_dir/head_<name>.safetensors and the SVG pictures. Collective. */
int dc_stage2_run(dc_job *job, const char *weights_path, dc_stage2_info *info);

#endif
