/*
 * comm.h: the MPI runtime of decouple.
 *
 * Rank and world size come from MPI only (MPI_Init_thread, MPI_Comm_rank/size), so the program runs the same
 * under mpirun, under `srun --mpi=pmix`, and as a singleton (./decouple without a launcher).
 *
 * Collective discipline: every function here that communicates is a collective and must be called by every
 * rank, on a path all ranks take. Rank-0-only code (writing files, printing) never calls them.
 *
 * Failure: dc_comm_init installs the dc_fatal abort hook, so any fatal error on any rank calls MPI_Abort and the
 * whole job ends instead of hanging in the next collective.
 */
#ifndef DC_COMM_H
#define DC_COMM_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    int rank, world;
    int initialized_here; /* we called MPI_Init_thread (and so must finalize) */
} dc_comm;

/* Initialises MPI (MPI_THREAD_FUNNELED: only the main thread calls MPI), sets the log prefix for ranks > 0,
 * and installs the MPI_Abort fatal hook. */
int dc_comm_init(dc_comm *c, int *argc, char ***argv);
void dc_comm_finalize(dc_comm *c);

/* Sum over ranks, in place. Counts may exceed INT_MAX (sent in chunks). */
void dc_comm_allreduce_sum_f32(const dc_comm *c, float *data, size_t n);
void dc_comm_allreduce_sum_f64(const dc_comm *c, double *data, size_t n);
void dc_comm_allreduce_sum_i64(const dc_comm *c, int64_t *data, size_t n);
void dc_comm_allreduce_max_f64(const dc_comm *c, double *data, size_t n);
void dc_comm_bcast(const dc_comm *c, void *data, size_t nbytes, int root);
void dc_comm_barrier(const dc_comm *c);

/* All ranks agree on an error: returns nonzero on every rank if `local_failed` is nonzero on any rank. */
int dc_comm_any(const dc_comm *c, int local_failed);

/* Gathers one fixed-size record of `len` bytes per rank into `all` on rank 0 (all may be NULL elsewhere). */
void dc_comm_gather_lines(const dc_comm *c, const char *line, size_t len, char *all);

/* Gathers variable-length blocks of rows to rank 0: rank r contributes local_rows rows of row_bytes bytes;
 * rank 0 receives them in rank order into `all` (sum of rows x row_bytes; may be NULL elsewhere). Counts are
 * in rows of a contiguous row datatype, never bytes, so a 437,513 x 2048 float gather (3.6 GB) stays far from
 * INT_MAX. Collective. */
void dc_comm_gather_rows(const dc_comm *c, const void *local, int64_t local_rows, size_t row_bytes, void *all);

/* The BN statistic reducer for sync-BN (layers.h dc_reduce_sum_fn), ctx = dc_comm*. */
void dc_comm_bn_reduce(double *values, int count, void *ctx);

#endif
