/*
 * pipeline.c: `decouple run` (stage 1, features, every head, evaluation), `decouple heads` (stage 2 from a
 * stage-1 checkpoint) and `decouple eval` (the saved heads on the test split).
 */
#include "core/check.h"
#include "job.h"
#include "stage1.h"
#include "stage2.h"

#include <stdio.h>
#include <string.h>

#define COMMON_OPTIONS                                                                                       \
    "  --set KEY=VALUE   override a config key (repeatable), e.g. --set stage2.crt_train.num_epochs=30\n"    \
    "  --log-dir DIR     override training_opt.log_dir\n"                                                    \
    "  --threads T       OpenMP/BLAS threads per rank\n"                                                     \
    "  --quiet           no progress on stdout (the log file still gets it)\n"                               \
    "  -h, --help        this text\n"

static const char *RUN_USAGE =
    "usage: decouple run CONFIG.yaml [options]\n"
    "\n"
    "The whole decoupled pipeline: stage 1 (backbone + joint classifier), feature extraction, the stage-2\n"
    "heads (NCM, cRT, tau-norm, LWS, logit adjustment; stage2.* in the config) and the evaluation. Prints "
    "one\n"
    "table (many / medium / few / all / macro per head) and writes log_dir/results.json, the heads and the\n"
    "SVG pictures (per-class accuracy, weight norms, tau sweep).\n"
    "\n"
    "options:\n" COMMON_OPTIONS "  --max-steps N     stop stage 1 after N steps\n"
    "  --resume auto|P   continue stage 1 from a checkpoint\n"
    "  --overwrite       reuse a log_dir that already holds a run\n";

static const char *HEADS_USAGE =
    "usage: decouple heads CONFIG.yaml [--weights FILE] [options]\n"
    "\n"
    "Stage 2 alone: fits the heads on the features of stage-1 weights (default\n"
    "log_dir/final.safetensors) and evaluates them; writes results.json, the heads\n"
    "and the SVG pictures into log_dir.\n"
    "\n"
    "options:\n" COMMON_OPTIONS "  --weights FILE    stage-1 weights\n";

static const char *EVAL_USAGE =
    "usage: decouple eval CONFIG.yaml [--weights FILE] [options]\n"
    "\n"
    "Evaluates the stage-1 weights and the heads saved in log_dir (head_*.safetensors)\n"
    "on the test split; writes results.json and the pictures into log_dir.\n"
    "\n"
    "options:\n" COMMON_OPTIONS "  --weights FILE    stage-1 weights\n";

static void default_weights(const dc_job *job, char *buf, size_t cap) {
    if (job->args.weights)
        snprintf(buf, cap, "%s", job->args.weights);
    else if (job->cfg.save_weights[0])
        snprintf(buf, cap, "%s", job->cfg.save_weights);
    else
        snprintf(buf, cap, "%s/final.safetensors", job->cfg.training_opt.log_dir);
}

int cmd_run(int argc, char **argv) {
    dc_job job;
    dc_job_parse_args(&job.args, argc, argv, RUN_USAGE, 1);
    job.log = NULL;
    dc_job_start(&job, &argc, &argv);
    dc_job_open_log_dir(&job, job.args.resume != NULL);
    dc_stage1_result s1;
    int code = dc_stage1_train(&job, &s1);
    if (code == DC_EXIT_OK) {
        dc_stage2_info info;
        memset(&info, 0, sizeof info);
        info.stage1_seconds = s1.train_seconds;
        dc_stage2_run(&job, s1.weights_path, &info);
        dc_job_print(&job, "pipeline: stage 1 %.1f s, stage 2 %.1f s\n", s1.train_seconds,
                     info.stage2_seconds);
    }
    dc_job_finish(&job);
    return code;
}

static int stage2_only(int argc, char **argv, const char *usage, int load_heads) {
    dc_job job;
    dc_job_parse_args(&job.args, argc, argv, usage, 1);
    job.log = NULL;
    dc_job_start(&job, &argc, &argv);
    dc_job_open_log_dir(&job, 1); /* works inside an existing run's log_dir */
    char weights[DC_PATH_MAX + 64];
    default_weights(&job, weights, sizeof weights);
    dc_stage2_info info;
    memset(&info, 0, sizeof info);
    if (load_heads) info.heads_dir = job.cfg.training_opt.log_dir;
    dc_stage2_run(&job, weights, &info);
    dc_job_finish(&job);
    return DC_EXIT_OK;
}

int cmd_heads(int argc, char **argv) {
    return stage2_only(argc, argv, HEADS_USAGE, 0);
}

int cmd_eval(int argc, char **argv) {
    return stage2_only(argc, argv, EVAL_USAGE, 1);
}
