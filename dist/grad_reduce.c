/*
 * grad_reduce.c: the gradient allreduce, single or bucketed and overlapped (grad_reduce.h).
 */
#include "grad_reduce.h"

#include "core/check.h"

#include <limits.h>
#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

int dc_grad_reduce_init(dc_grad_reducer *r, const dc_comm *comm, float *grads, size_t n, double bucket_mb) {
    r->comm = comm;
    r->grads = grads;
    r->n = n;
    r->bucket = bucket_mb > 0 ? (size_t)(bucket_mb * 1024 * 1024 / sizeof(float)) : 0;
    if (r->bucket > (size_t)INT_MAX) r->bucket = (size_t)INT_MAX;
    if (r->bucket && (n + r->bucket - 1) / r->bucket > DC_MAX_BUCKETS)
        r->bucket = (n + DC_MAX_BUCKETS - 1) / DC_MAX_BUCKETS; /* never more buckets than requests */
    r->requests = dc_calloc(DC_MAX_BUCKETS, sizeof(MPI_Request));
    r->wait_seconds = 0;
    return r->requests ? DC_OK : DC_FAIL;
}

void dc_grad_reduce_free(dc_grad_reducer *r) {
    free(r->requests);
    r->requests = NULL;
}

void dc_grad_reduce_begin(dc_grad_reducer *r) {
    r->next_end = r->n;
    r->n_started = 0;
}

static void start_bucket(dc_grad_reducer *r, size_t lo, size_t hi) {
    if (r->comm->check_collectives) { /* debug mode (comm.h) */
        char what[32];
        snprintf(what, sizeof what, "gradient bucket %d", r->n_started);
        dc_comm_check_site(r->comm, what, __FILE__, __LINE__);
    }
    MPI_Request *req = (MPI_Request *)r->requests + r->n_started++;
    int rc =
        MPI_Iallreduce(MPI_IN_PLACE, r->grads + lo, (int)(hi - lo), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, req);
    if (rc != MPI_SUCCESS) dc_fatal("MPI_Iallreduce of gradient bucket [%zu, %zu) failed", lo, hi);
}

void dc_grad_reduce_ready(void *ctx, size_t begin) {
    dc_grad_reducer *r = ctx;
    if (r->comm->world <= 1 || r->bucket == 0) return;
    /* start every complete bucket inside [begin, n): fixed boundaries counted from the end */
    while (r->next_end > 0 && r->next_end - (r->next_end >= r->bucket ? r->bucket : r->next_end) >= begin &&
           r->next_end >= r->bucket) {
        size_t lo = r->next_end - r->bucket;
        if (lo < begin) break;
        start_bucket(r, lo, r->next_end);
        r->next_end = lo;
    }
    if (r->n_started) {
        int flag;
        MPI_Testall(r->n_started, (MPI_Request *)r->requests, &flag, MPI_STATUSES_IGNORE);
    }
}

void dc_grad_reduce_finish(dc_grad_reducer *r, size_t lo) {
    if (r->comm->world <= 1) return;
    double t0 = omp_get_wtime();
    if (r->bucket == 0) {
        dc_comm_allreduce_sum_f32(r->comm, r->grads + lo, r->n - lo);
    } else {
        while (r->next_end > lo) {
            size_t b = r->next_end - lo < r->bucket ? r->next_end - lo : r->bucket;
            start_bucket(r, r->next_end - b, r->next_end);
            r->next_end -= b;
        }
        if (MPI_Waitall(r->n_started, (MPI_Request *)r->requests, MPI_STATUSES_IGNORE) != MPI_SUCCESS)
            dc_fatal("waiting for the gradient allreduce failed");
    }
    r->wait_seconds += omp_get_wtime() - t0;
}
