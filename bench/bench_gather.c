/*
 * bench_gather.c: rank 0's memory peak and the time of stage 2's feature gather at iNaturalist-2018 size.
 *
 *   mpirun -np R bench_gather [--rows 437513] [--dim 2048] [--classes 8142]
 *
 * Does what jobs/stage2.c does for cRT and LWS in the default (gather) mode, with synthetic features: every
 * rank fills its contiguous shard of rows x dim floats (as feature extraction would), rank 0 allocates the
 * whole matrix and the labels, dc_comm_gather_rows brings the shards over in rank order (counts in rows of a
 * row datatype: 437,513 x 2048 floats = 3.58 GB, far above INT_MAX bytes), then rank 0 allocates what the cRT
 * trainer adds (weights, gradients and momentum of a C x dim classifier). Each rank reports its peak resident
 * set (VmHWM from /proc/self/status) at each point, and rank 0 checks every gathered row.
 *
 *   RESULT gather ranks=2 rows=437513 dim=2048 gb=3.58 seconds=... rank0_peak_mb=... other_rank_peak_mb=...
 */
#include "core/check.h"
#include "dist/comm.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static double peak_mb(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double kb = 0;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) kb = atof(line + 6);
    fclose(f);
    return kb / 1024;
}

/* the value of element (row, col): cheap, distinct per row, exactly representable */
static float value_at(int64_t row, int col) {
    return (float)(row % 65536) + (float)col / 4096.0f;
}

int main(int argc, char **argv) {
    dc_comm comm;
    DC_CHECK_OK(dc_comm_init(&comm, &argc, &argv), "MPI");
    int64_t rows = 437513;
    int dim = 2048, classes = 8142;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--rows") && i + 1 < argc)
            rows = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--dim") && i + 1 < argc)
            dim = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--classes") && i + 1 < argc)
            classes = atoi(argv[++i]);
        else {
            if (comm.rank == 0)
                fprintf(stderr, "usage: mpirun -np R bench_gather [--rows N] [--dim D] [--classes C]\n");
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
    }
    if (rows < comm.world || dim < 1 || classes < 1) {
        if (comm.rank == 0) fprintf(stderr, "bench_gather: need rows >= ranks, dim >= 1, classes >= 1\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    /* contiguous shards, as stage 2 cuts them */
    int64_t begin = rows * comm.rank / comm.world, end = rows * (comm.rank + 1) / comm.world, n = end - begin;
    size_t row_bytes = (size_t)dim * sizeof(float);
    float *local = dc_malloc((size_t)n * row_bytes + 1);
    int32_t *local_y = dc_malloc((size_t)n * sizeof(int32_t) + 1);
    DC_CHECK(local && local_y, "out of memory for the local shard");
    for (int64_t r = 0; r < n; r++) {
        for (int c = 0; c < dim; c++) local[(size_t)r * dim + c] = value_at(begin + r, c);
        local_y[r] = (int32_t)((begin + r) % classes);
    }
    double after_extract = peak_mb();

    float *all = NULL;
    int32_t *all_y = NULL;
    if (comm.rank == 0) {
        all = dc_malloc((size_t)rows * row_bytes);
        all_y = dc_malloc((size_t)rows * sizeof(int32_t));
        DC_CHECK(all && all_y, "rank 0 cannot hold the gathered features");
    }
    MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    dc_comm_gather_rows(&comm, local, n, row_bytes, all);
    dc_comm_gather_rows(&comm, local_y, n, sizeof(int32_t), all_y);
    double seconds = MPI_Wtime() - t0;
    double after_gather = peak_mb();

    int bad = 0;
    if (comm.rank == 0) {
        for (int64_t r = 0; r < rows && !bad; r++) {
            if (all_y[r] != (int32_t)(r % classes)) bad = 1;
            for (int c = 0; c < dim; c += 97)
                if (all[(size_t)r * dim + c] != value_at(r, c)) bad = 1;
        }
        /* the cRT trainer on rank 0: C x dim weights + bias, their gradients and momentum, touched */
        size_t head = (size_t)classes * ((size_t)dim + 1);
        float *crt = dc_calloc(3 * head, sizeof(float));
        DC_CHECK(crt, "out of memory for the cRT head");
        for (size_t i = 0; i < 3 * head; i += 1024) crt[i] = 1.0f;
        free(crt);
    }
    double rank0_peak = peak_mb(), other = 0;
    if (comm.world > 1) {
        double mine = comm.rank == 0 ? 0 : after_gather;
        MPI_Reduce(&mine, &other, 1, MPI_DOUBLE, MPI_MAX, 0, MPI_COMM_WORLD);
    }
    if (comm.rank == 0) {
        printf("# rank 0: %.0f MB after extraction (its shard), %.0f MB after the gather, %.0f MB with the "
               "cRT head\n",
               after_extract, after_gather, rank0_peak);
        printf("RESULT gather ranks=%d rows=%lld dim=%d gb=%.2f seconds=%.2f rank0_peak_mb=%.0f "
               "other_rank_peak_mb=%.0f "
               "check=%s\n",
               comm.world, (long long)rows, dim, (double)rows * row_bytes / 1e9, seconds, rank0_peak, other,
               bad ? "FAILED" : "ok");
    }
    free(all);
    free(all_y);
    free(local);
    free(local_y);
    dc_comm_finalize(&comm);
    return bad;
}
