/*
 * stage1.h: stage 1 as a function, shared by `decouple train` and the `decouple run` pipeline.
 */
#ifndef DC_STAGE1_H
#define DC_STAGE1_H

#include "heads/metrics.h"
#include "job.h"

typedef struct {
    double train_seconds;
    int64_t steps;
    int preempted;           /* stopped by a signal after writing a checkpoint */
    dc_metrics_summary test; /* the joint classifier on the test split */
    char weights_path[DC_PATH_MAX + 64];
} dc_stage1_result;

/* Trains (or resumes, with job->args.resume), evaluates the joint classifier on test and writes the final
 * weights. Collective. Returns DC_EXIT_OK or DC_EXIT_PREEMPTED. */
int dc_stage1_train(dc_job *job, dc_stage1_result *out);

#endif
