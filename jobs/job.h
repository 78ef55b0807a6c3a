/*
 * job.h: what every decouple subcommand shares: the command line, the config, MPI, threads, the log.
 *
 * A subcommand is a function `int cmd_x(int argc, char **argv)` that returns the process exit code. Errors a
 * user can cause (bad config, bad file, bad flag) end in dc_fatal with the message and a hint; dc_fatal goes
 * through MPI_Abort once MPI is up, so no rank is left waiting in a collective.
 */
#ifndef DC_JOB_H
#define DC_JOB_H

#include "core/check.h"
#include "core/config.h"
#include "dist/comm.h"

#include <stdio.h>

#define DC_MAX_SETS 64

/* Exit codes (documented in README.md). */
enum {
    DC_EXIT_OK = 0,
    DC_EXIT_ERROR = 1,    /* bad input or runtime failure */
    DC_EXIT_USAGE = 2,    /* bad command line */
    DC_EXIT_PREEMPTED = 3 /* stopped by SIGTERM/SIGUSR1 after writing a checkpoint */
};

typedef struct {
    const char *config_path;
    const char *sets[DC_MAX_SETS]; /* --set key.path=value */
    int n_sets;
    long long max_steps; /* --max-steps (overrides training_opt.max_steps when >= 0) */
    const char *log_dir; /* --log-dir */
    const char *resume;  /* --resume auto|PATH */
    const char *weights; /* --weights (extract, heads, eval) */
    const char *out_dir; /* --out (extract) */
    const char *split;   /* --split train|val|test (extract) */
    int overwrite;       /* --overwrite */
    int threads;         /* --threads (0: OMP_NUM_THREADS or all cores) */
    int quiet;
} dc_job_args;

typedef struct {
    dc_job_args args;
    dc_config cfg;
    dc_comm comm;
    FILE *log; /* rank 0: log_dir/train.log (NULL elsewhere) */
} dc_job;

/* Parses the common flags; prints `usage` and exits 0 on --help, exits 2 on a bad flag. Positional argument:
 * the config path (required when need_config). */
void dc_job_parse_args(dc_job_args *a, int argc, char **argv, const char *usage, int need_config);

/* MPI, threads, config (+ overrides), validation, the start-up table. */
void dc_job_start(dc_job *job, int *argc, char ***argv);
void dc_job_finish(dc_job *job);

/* Creates log_dir on rank 0 (refusing to reuse a non-empty one unless resuming or --overwrite), opens the log
 * file and writes the effective config. Collective: every rank calls it. */
void dc_job_open_log_dir(dc_job *job, int resuming);

/* Rank-0 progress line, to stdout and the log file. */
void dc_job_print(dc_job *job, const char *fmt, ...) DC_PRINTF(2, 3);

#endif
