/*
 * grad_reduce.h: summing the gradient slab over ranks, optionally overlapped with backward.
 *
 * The loss gradient is pre-scaled by 1/global_batch, so the SUM over ranks of the per-rank gradients is the
 * gradient of the global-batch mean loss (no "mean of means" error when ranks hold different sample counts).
 *
 * Two modes:
 *  - single: one MPI_Allreduce over the whole slab after backward (bucket_floats == 0);
 *  - bucketed (default): the slab is cut into fixed buckets counted from its END, [n - (k+1)b, n - kb).
 *    Backward finishes the last layers first, and the network reports (dc_net.grad_ready) each time a suffix
 *    [begin, n) of the slab is final; every bucket lying entirely in that suffix is started at once with
 *    MPI_Iallreduce. Bucket boundaries and issue order depend only on n and b, never on timing, so every
 *    rank issues the same collectives in the same order (the rule PyTorch DDP states for its buckets).
 *    dc_grad_reduce_finish starts the remaining buckets and waits for all of them before the optimizer step.
 *
 * Open MPI progresses non-blocking collectives inside MPI calls, so each grad_ready callback also calls
 * MPI_Testall on the outstanding requests to keep the early buckets moving while backward computes.
 */
#ifndef DC_GRAD_REDUCE_H
#define DC_GRAD_REDUCE_H

#include "comm.h"

#include <stddef.h>

#define DC_MAX_BUCKETS 4096

typedef struct {
    const dc_comm *comm;
    float *grads;
    size_t n;        /* slab length */
    size_t bucket;   /* floats per bucket; 0: single allreduce */
    size_t next_end; /* buckets at or above this offset have been started */
    int n_started;
    void *requests;      /* MPI_Request[DC_MAX_BUCKETS] */
    double wait_seconds; /* time spent blocked in finish (the part of communication not hidden) */
} dc_grad_reducer;

int dc_grad_reduce_init(dc_grad_reducer *r, const dc_comm *comm, float *grads, size_t n, double bucket_mb);
void dc_grad_reduce_free(dc_grad_reducer *r);

/* Before backward. */
void dc_grad_reduce_begin(dc_grad_reducer *r);

/* dc_grad_ready_fn for dc_net.grad_ready (ctx = the reducer): gradients in [begin, n) are final. */
void dc_grad_reduce_ready(void *ctx, size_t begin);

/* After backward: reduces [lo, n) completely (lo = 0 for the whole slab, fc_param_begin when only the
 * classifier was trained) and waits. Every rank calls it with the same lo. */
void dc_grad_reduce_finish(dc_grad_reducer *r, size_t lo);

#endif
