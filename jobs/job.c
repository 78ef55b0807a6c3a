/*
 * job.c: command line, start-up and logging shared by the subcommands (job.h).
 *
 * Threads: OpenMP owns every thread. OpenBLAS is the OpenMP build (CMakeLists.txt links
 * openblas-openmp/libopenblas.so), so its GEMMs run on the same pool; our own loops are
 * `#pragma omp parallel for` regions from serial code, and BLAS is never called inside one. The thread count
 * is
 * --threads, else OMP_NUM_THREADS, else the cores available to the process; each MPI rank should be bound to
 * that many cores (the sbatch scripts in jobs/slurm/, README.md).
 */
#define _GNU_SOURCE
#include "job.h"

#include "core/check.h"

#include <cblas.h>
#include <errno.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

extern char *openblas_get_corename(void);
extern void openblas_set_num_threads(int);
extern int openblas_get_num_threads(void);
extern int openblas_get_parallel(void);

static void usage_exit(const char *usage, int code) {
    fputs(usage, code == 0 ? stdout : stderr);
    exit(code);
}

static int parse_ll(const char *s, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return DC_FAIL;
    *out = v;
    return DC_OK;
}

/* Paths given as flags end up in DC_PATH_MAX buffers (the config's log_dir, extract's weights and out paths):
 * a longer one would be cut silently and name another file, so it is a command-line error. */
static const char *path_value(const char *flag, const char *value) {
    size_t n = strlen(value);
    if (n >= DC_PATH_MAX) {
        fprintf(stderr, "decouple: %s: the path is %zu bytes long, at most %d\n", flag, n, DC_PATH_MAX - 1);
        exit(DC_EXIT_USAGE);
    }
    return value;
}

void dc_job_parse_args(dc_job_args *a, int argc, char **argv, const char *usage, int need_config) {
    memset(a, 0, sizeof *a);
    a->max_steps = -1;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const char *next = (i + 1 < argc) ? argv[i + 1] : NULL;
#define NEED_VALUE()                                                                                         \
    do {                                                                                                     \
        if (!next) {                                                                                         \
            fprintf(stderr, "decouple: %s needs a value\n\n", arg);                                          \
            usage_exit(usage, DC_EXIT_USAGE);                                                                \
        }                                                                                                    \
        i++;                                                                                                 \
    } while (0)
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help"))
            usage_exit(usage, 0);
        else if (!strcmp(arg, "--set")) {
            NEED_VALUE();
            if (a->n_sets == DC_MAX_SETS) {
                fprintf(stderr, "decouple: at most %d --set options\n", DC_MAX_SETS);
                exit(DC_EXIT_USAGE);
            }
            a->sets[a->n_sets++] = next;
        } else if (!strcmp(arg, "--max-steps")) {
            NEED_VALUE();
            if (parse_ll(next, &a->max_steps) != DC_OK || a->max_steps < 0) {
                fprintf(stderr, "decouple: --max-steps: expected an integer >= 0, got '%s'\n", next);
                exit(DC_EXIT_USAGE);
            }
        } else if (!strcmp(arg, "--threads")) {
            NEED_VALUE();
            long long t;
            if (parse_ll(next, &t) != DC_OK || t < 1 || t > 4096) {
                fprintf(stderr, "decouple: --threads: expected an integer 1..4096, got '%s'\n", next);
                exit(DC_EXIT_USAGE);
            }
            a->threads = (int)t;
        } else if (!strcmp(arg, "--log-dir")) {
            NEED_VALUE();
            a->log_dir = path_value(arg, next);
        } else if (!strcmp(arg, "--resume")) {
            NEED_VALUE();
            a->resume = path_value(arg, next);
        } else if (!strcmp(arg, "--weights")) {
            NEED_VALUE();
            a->weights = path_value(arg, next);
        } else if (!strcmp(arg, "--out")) {
            NEED_VALUE();
            a->out_dir = path_value(arg, next);
        } else if (!strcmp(arg, "--split")) {
            NEED_VALUE();
            if (strcmp(next, "train") && strcmp(next, "val") && strcmp(next, "test")) {
                fprintf(stderr, "decouple: --split: expected train, val or test, got '%s'\n", next);
                exit(DC_EXIT_USAGE);
            }
            a->split = next;
        } else if (!strcmp(arg, "--overwrite")) {
            a->overwrite = 1;
        } else if (!strcmp(arg, "--quiet")) {
            a->quiet = 1;
        } else if (arg[0] == '-' && arg[1]) {
            fprintf(stderr, "decouple: unknown option '%s'\n\n", arg);
            usage_exit(usage, DC_EXIT_USAGE);
        } else if (!a->config_path) {
            a->config_path = arg;
        } else {
            fprintf(stderr, "decouple: unexpected argument '%s'\n\n", arg);
            usage_exit(usage, DC_EXIT_USAGE);
        }
#undef NEED_VALUE
    }
    if (need_config && !a->config_path) {
        fprintf(stderr, "decouple: missing CONFIG.yaml\n\n");
        usage_exit(usage, DC_EXIT_USAGE);
    }
}

static void setup_threads(dc_job *job) {
    int t = job->args.threads;
    if (t <= 0) t = omp_get_max_threads(); /* OMP_NUM_THREADS, else the available cores */
    omp_set_num_threads(t);
    openblas_set_num_threads(t);
    if (openblas_get_parallel() != 2 && job->comm.rank == 0)
        dc_log("warning: OpenBLAS is not the OpenMP build (parallel=%d); threads may oversubscribe",
               openblas_get_parallel());
}

static void print_startup_table(dc_job *job) {
    /* Every rank reports host, threads and binding; rank 0 prints them in rank order. */
    char line[256], host[64] = "?";
    gethostname(host, sizeof host);
    host[sizeof host - 1] = 0;
    char bind[64] = "unbound";
    {
        cpu_set_t set;
        if (sched_getaffinity(0, sizeof set, &set) == 0) {
            int n = CPU_COUNT(&set), first = -1, last = -1;
            for (int i = 0; i < CPU_SETSIZE; i++)
                if (CPU_ISSET(i, &set)) {
                    if (first < 0) first = i;
                    last = i;
                }
            snprintf(bind, sizeof bind, "%d cores (%d-%d)", n, first, last);
        }
    }
    snprintf(line, sizeof line, "  %4d  %-20s %4d %5d  %-14s %s", job->comm.rank, host, omp_get_max_threads(),
             openblas_get_num_threads(), openblas_get_corename(), bind);
    int W = job->comm.world;
    char *all = NULL;
    if (job->comm.rank == 0) all = malloc((size_t)W * sizeof line);
    /* gather fixed-size lines to rank 0 (every rank takes this path) */
    dc_comm_gather_lines(&job->comm, line, sizeof line, all);
    if (job->comm.rank == 0 && !job->args.quiet) {
        printf("decouple %s: %d rank(s)\n  rank  host                  omp  blas  blas-kernel    binding\n",
               "0.1.0", W);
        for (int r = 0; r < W; r++) printf("%s\n", all + (size_t)r * sizeof line);
        fflush(stdout);
    }
    free(all);
}

void dc_job_start(dc_job *job, int *argc, char ***argv) {
    if (dc_comm_init(&job->comm, argc, argv) != DC_OK) {
        fprintf(stderr, "error: %s\n", dc_last_error());
        exit(DC_EXIT_ERROR);
    }
    setup_threads(job);
    dc_config_defaults(&job->cfg);
    if (job->args.config_path) {
        DC_CHECK_OK(dc_config_load(&job->cfg, job->args.config_path),
                    "see docs/CONFIG.md for every key, its type and its default");
    }
    for (int i = 0; i < job->args.n_sets; i++)
        DC_CHECK_OK(dc_config_set(&job->cfg, job->args.sets[i]), "--set takes key.path=value, e.g. "
                                                                 "--set training_opt.batch_size=256");
    if (job->args.max_steps >= 0) job->cfg.training_opt.max_steps = job->args.max_steps;
    if (job->args.log_dir) snprintf(job->cfg.training_opt.log_dir, DC_PATH_MAX, "%s", job->args.log_dir);
    DC_CHECK_OK(dc_config_validate(&job->cfg), "see docs/CONFIG.md");
    print_startup_table(job);
}

void dc_job_finish(dc_job *job) {
    if (job->log) fclose(job->log);
    job->log = NULL;
    dc_comm_finalize(&job->comm);
}

static int dir_is_nonempty(const char *path) {
    char cmd[DC_PATH_MAX + 32];
    struct stat st;
    if (stat(path, &st) != 0) return 0;
    snprintf(cmd, sizeof cmd, "%s/config.yaml", path);
    return access(cmd, F_OK) == 0;
}

static int mkdir_p(const char *path) {
    char tmp[DC_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/') continue;
        *p = 0;
        if (mkdir(tmp, 0775) != 0 && errno != EEXIST)
            return DC_ERR("cannot create %s: %s", tmp, strerror(errno));
        *p = '/';
    }
    if (mkdir(tmp, 0775) != 0 && errno != EEXIST) return DC_ERR("cannot create %s: %s", tmp, strerror(errno));
    return DC_OK;
}

void dc_job_open_log_dir(dc_job *job, int resuming) {
    const char *dir = job->cfg.training_opt.log_dir;
    int failed = 0;
    char msg[3 * DC_PATH_MAX] = "";
    if (job->comm.rank == 0) {
        if (!resuming && !job->args.overwrite && dir_is_nonempty(dir)) {
            snprintf(msg, sizeof msg,
                     "log_dir %s already holds a run; pass --resume auto to continue it, --overwrite to "
                     "replace it, or choose another --log-dir",
                     dir);
            failed = 1;
        } else if (!dir[0]) {
            snprintf(msg, sizeof msg,
                     "training_opt.log_dir is empty; set it in the config or with --log-dir");
            failed = 1;
        } else if (mkdir_p(dir) != DC_OK) {
            snprintf(msg, sizeof msg, "training_opt.log_dir: %s", dc_last_error());
            failed = 1;
        } else {
            char path[DC_PATH_MAX + 32];
            snprintf(path, sizeof path, "%s/train.log", dir);
            job->log = fopen(path, resuming ? "a" : "w");
            if (!job->log) {
                snprintf(msg, sizeof msg, "cannot open %s: %s", path, strerror(errno));
                failed = 1;
            } else {
                snprintf(path, sizeof path, "%s/config.yaml", dir);
                if (dc_config_write(&job->cfg, path) != DC_OK) {
                    snprintf(msg, sizeof msg, "%s", dc_last_error());
                    failed = 1;
                }
            }
        }
    }
    if (dc_comm_any(&job->comm, failed)) {
        if (job->comm.rank == 0) dc_fatal("%s", msg);
        dc_comm_barrier(&job->comm); /* rank 0 aborts the job */
        dc_fatal("rank 0 could not prepare log_dir %s", dir);
    }
}

void dc_job_print(dc_job *job, const char *fmt, ...) {
    if (job->comm.rank != 0) return;
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (!job->args.quiet) {
        fputs(line, stdout);
        fflush(stdout);
    }
    if (job->log) {
        fputs(line, job->log);
        fflush(job->log);
    }
}
