/*
 * comm.h: the MPI runtime of decouple.
 *
 * Rank and world size come from MPI only (MPI_Init_thread, MPI_Comm_rank/size), so the program runs the same
 * under mpirun, under `srun --mpi=pmix`, and as a singleton (./decouple without a launcher).
 *
 * Collective discipline: every function here that communicates is a collective and must be called by every
 * rank, on a path all ranks take. Rank-0-only code (writing files, printing) never calls them.
 *
 * Failure: dc_comm_init installs the dc_fatal abort hook, so any fatal error on any rank calls MPI_Abort and
 * the whole job ends instead of hanging in the next collective.
 */
#ifndef DC_COMM_H
#define DC_COMM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int rank, world;
    int initialized_here;  /* we called MPI_Init_thread (and so must finalize) */
    int check_collectives; /* DC_CHECK_COLLECTIVES=1: verify call sites before each collective */
} dc_comm;

/*
 * Collective-discipline debug mode. With DC_CHECK_COLLECTIVES=1 in every rank's environment (mpirun -x
 * DC_CHECK_COLLECTIVES=1), every collective below, each gradient bucket and each sync-BN reduction is
 * preceded by an MPI_Allgather of (sequence number, call site) records: the n-th check on every rank belongs
 * to the n-th collective, so ranks about to enter different collectives (a collective on a rank-0-only path,
 * a branch taken on one rank only) are caught before the mismatched call, and the job aborts with a table of
 * every rank's file:line instead of hanging or reducing the wrong buffers. One extra small collective per
 * collective: for debugging, off by default. The public functions are macros that pass the caller's
 * __FILE__ and __LINE__.
 */
void dc_comm_check_site(const dc_comm *c, const char *what, const char *file, int line);

/* Initialises MPI (MPI_THREAD_FUNNELED: only the main thread calls MPI), sets the log prefix for ranks > 0,
 * and installs the MPI_Abort fatal hook. */
int dc_comm_init(dc_comm *c, int *argc, char ***argv);
void dc_comm_finalize(dc_comm *c);

/* Sum over ranks, in place. Counts may exceed INT_MAX (sent in chunks). */
void dc_comm_allreduce_sum_f32_at(const dc_comm *c, float *data, size_t n, const char *file, int line);
#define dc_comm_allreduce_sum_f32(c, d, n) dc_comm_allreduce_sum_f32_at(c, d, n, __FILE__, __LINE__)
void dc_comm_allreduce_sum_f64_at(const dc_comm *c, double *data, size_t n, const char *file, int line);
#define dc_comm_allreduce_sum_f64(c, d, n) dc_comm_allreduce_sum_f64_at(c, d, n, __FILE__, __LINE__)
void dc_comm_allreduce_sum_i64_at(const dc_comm *c, int64_t *data, size_t n, const char *file, int line);
#define dc_comm_allreduce_sum_i64(c, d, n) dc_comm_allreduce_sum_i64_at(c, d, n, __FILE__, __LINE__)
void dc_comm_allreduce_max_f64_at(const dc_comm *c, double *data, size_t n, const char *file, int line);
#define dc_comm_allreduce_max_f64(c, d, n) dc_comm_allreduce_max_f64_at(c, d, n, __FILE__, __LINE__)
void dc_comm_bcast_at(const dc_comm *c, void *data, size_t nbytes, int root, const char *file, int line);
#define dc_comm_bcast(c, d, n, root) dc_comm_bcast_at(c, d, n, root, __FILE__, __LINE__)
void dc_comm_barrier_at(const dc_comm *c, const char *file, int line);
#define dc_comm_barrier(c) dc_comm_barrier_at(c, __FILE__, __LINE__)

/* All ranks agree on an error: returns nonzero on every rank if `local_failed` is nonzero on any rank. */
int dc_comm_any_at(const dc_comm *c, int local_failed, const char *file, int line);
#define dc_comm_any(c, f) dc_comm_any_at(c, f, __FILE__, __LINE__)

/* Gathers one fixed-size record of `len` bytes per rank into `all` on rank 0 (all may be NULL elsewhere). */
void dc_comm_gather_lines_at(const dc_comm *c, const char *record, size_t len, char *all, const char *file,
                             int line);
#define dc_comm_gather_lines(c, l, n, a) dc_comm_gather_lines_at(c, l, n, a, __FILE__, __LINE__)

/* Gathers variable-length blocks of rows to rank 0: rank r contributes local_rows rows of row_bytes bytes;
 * rank 0 receives them in rank order into `all` (sum of rows x row_bytes; may be NULL elsewhere). Counts are
 * in rows of a contiguous row datatype, never bytes, so a 437,513 x 2048 float gather (3.6 GB) stays far from
 * INT_MAX. Collective. */
void dc_comm_gather_rows_at(const dc_comm *c, const void *local, int64_t local_rows, size_t row_bytes,
                            void *all, const char *file, int line);
#define dc_comm_gather_rows(c, l, n, b, a) dc_comm_gather_rows_at(c, l, n, b, a, __FILE__, __LINE__)

/* The BN statistic reducer for sync-BN (layers.h dc_reduce_sum_fn), ctx = dc_comm*. */
void dc_comm_bn_reduce(double *values, int count, void *ctx);

#endif
