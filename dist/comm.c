/*
 * comm.c: MPI runtime (see comm.h).
 */
#include "comm.h"

#include "core/check.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CHUNK ((size_t)1 << 30) /* elements per MPI call: keeps every count far below INT_MAX */

static void mpi_abort_hook(int code) {
    int up = 0, down = 0;
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    if (up && !down) MPI_Abort(MPI_COMM_WORLD, code);
}

#define MPI_CHECK(call)                                                                                      \
    do {                                                                                                     \
        int rc_ = (call);                                                                                    \
        if (rc_ != MPI_SUCCESS) {                                                                            \
            char msg_[MPI_MAX_ERROR_STRING];                                                                 \
            int len_ = 0;                                                                                    \
            MPI_Error_string(rc_, msg_, &len_);                                                              \
            dc_fatal_at(__FILE__, __LINE__, "an MPI call failed; check the launcher and the network",        \
                        "%s: %s", #call, msg_);                                                              \
        }                                                                                                    \
    } while (0)

/* ---- collective-discipline debug mode (comm.h) ----------------------------------------------------------
 */

typedef struct {
    uint64_t seq; /* this rank's collective count */
    int32_t line;
    char what[32]; /* which collective */
    char file[40]; /* the caller's source file, its last 39 characters */
} site_record;

static uint64_t collective_seq;

void dc_comm_check_site(const dc_comm *c, const char *what, const char *file, int line) {
    if (!c->check_collectives || c->world <= 1) return;
    site_record mine;
    memset(&mine, 0, sizeof mine);
    mine.seq = ++collective_seq;
    mine.line = line;
    snprintf(mine.what, sizeof mine.what, "%s", what);
    size_t fl = strlen(file);
    snprintf(mine.file, sizeof mine.file, "%s",
             fl >= sizeof mine.file ? file + fl - (sizeof mine.file - 1) : file);
    site_record *all = malloc(sizeof(site_record) * (size_t)c->world);
    if (!all) dc_fatal("out of memory in the collective check");
    MPI_CHECK(
        MPI_Allgather(&mine, (int)sizeof mine, MPI_BYTE, all, (int)sizeof mine, MPI_BYTE, MPI_COMM_WORLD));
    int same = 1;
    for (int r = 1; r < c->world; r++)
        if (memcmp(&all[r], &all[0], sizeof mine)) same = 0;
    if (!same) {
        char table[4096];
        size_t off = 0;
        for (int r = 0; r < c->world && off + 160 < sizeof table; r++)
            off += (size_t)snprintf(
                table + off, sizeof table - off, "\n    rank %d: collective #%llu, %s at %s:%d", r,
                (unsigned long long)all[r].seq, all[r].what, all[r].file, (int)all[r].line);
        free(all);
        if (c->rank != 0) { /* rank 0 prints the table; the others follow it into MPI_Abort */
            sleep(2);
            dc_fatal("DC_CHECK_COLLECTIVES: collective mismatch (rank 0 prints every rank's call site)");
        }
        dc_fatal_at(__FILE__, __LINE__,
                    "a collective is on a path that not every rank takes (see docs/DISTRIBUTED.md)",
                    "DC_CHECK_COLLECTIVES: the ranks are about to enter different collectives:%s", table);
    }
    free(all);
}

int dc_comm_init(dc_comm *c, int *argc, char ***argv) {
    int up = 0, provided = 0;
    MPI_Initialized(&up);
    c->initialized_here = 0;
    if (!up) {
        if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
            return DC_ERR("MPI_Init_thread failed");
        c->initialized_here = 1;
    }
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->world);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    if (c->world > 1) dc_set_log_rank(c->rank);
    const char *chk = getenv("DC_CHECK_COLLECTIVES");
    c->check_collectives = chk && *chk && strcmp(chk, "0");
    dc_set_abort_hook(mpi_abort_hook);
    return DC_OK;
}

void dc_comm_finalize(dc_comm *c) {
    if (c->initialized_here) MPI_Finalize();
    c->initialized_here = 0;
}

static void allreduce(const dc_comm *c, void *data, size_t n, MPI_Datatype t, size_t esize, MPI_Op op) {
    if (c->world <= 1) return;
    for (size_t off = 0; off < n; off += CHUNK) {
        size_t cnt = n - off < CHUNK ? n - off : CHUNK;
        MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, (char *)data + off * esize, (int)cnt, t, op, MPI_COMM_WORLD));
    }
}

void dc_comm_allreduce_sum_f32_at(const dc_comm *c, float *data, size_t n, const char *file, int line) {
    dc_comm_check_site(c, "allreduce_sum_f32", file, line);
    allreduce(c, data, n, MPI_FLOAT, sizeof(float), MPI_SUM);
}
void dc_comm_allreduce_sum_f64_at(const dc_comm *c, double *data, size_t n, const char *file, int line) {
    dc_comm_check_site(c, "allreduce_sum_f64", file, line);
    allreduce(c, data, n, MPI_DOUBLE, sizeof(double), MPI_SUM);
}
void dc_comm_allreduce_sum_i64_at(const dc_comm *c, int64_t *data, size_t n, const char *file, int line) {
    dc_comm_check_site(c, "allreduce_sum_i64", file, line);
    allreduce(c, data, n, MPI_INT64_T, sizeof(int64_t), MPI_SUM);
}
void dc_comm_allreduce_max_f64_at(const dc_comm *c, double *data, size_t n, const char *file, int line) {
    dc_comm_check_site(c, "allreduce_max_f64", file, line);
    allreduce(c, data, n, MPI_DOUBLE, sizeof(double), MPI_MAX);
}

void dc_comm_bcast_at(const dc_comm *c, void *data, size_t nbytes, int root, const char *file, int line) {
    if (c->world <= 1) return;
    dc_comm_check_site(c, "bcast", file, line);
    for (size_t off = 0; off < nbytes; off += CHUNK) {
        size_t cnt = nbytes - off < CHUNK ? nbytes - off : CHUNK;
        MPI_CHECK(MPI_Bcast((char *)data + off, (int)cnt, MPI_BYTE, root, MPI_COMM_WORLD));
    }
}

void dc_comm_barrier_at(const dc_comm *c, const char *file, int line) {
    if (c->world <= 1) return;
    dc_comm_check_site(c, "barrier", file, line);
    MPI_CHECK(MPI_Barrier(MPI_COMM_WORLD));
}

int dc_comm_any_at(const dc_comm *c, int local_failed, const char *file, int line) {
    int v = local_failed ? 1 : 0;
    if (c->world <= 1) return v;
    dc_comm_check_site(c, "any", file, line);
    MPI_CHECK(MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD));
    return v;
}

void dc_comm_bn_reduce(double *values, int count, void *ctx) {
    const dc_comm *c = ctx;
    if (c->check_collectives) {
        char what[32];
        snprintf(what, sizeof what, "sync-BN stats (%d values)", count);
        dc_comm_check_site(c, what, __FILE__, __LINE__);
    }
    allreduce(c, values, (size_t)count, MPI_DOUBLE, sizeof(double), MPI_SUM);
}

void dc_comm_gather_lines_at(const dc_comm *c, const char *record, size_t len, char *all, const char *file,
                             int line) {
    if (c->world <= 1) {
        memcpy(all, record, len);
        return;
    }
    dc_comm_check_site(c, "gather_lines", file, line);
    MPI_CHECK(MPI_Gather(record, (int)len, MPI_CHAR, all, (int)len, MPI_CHAR, 0, MPI_COMM_WORLD));
}

void dc_comm_gather_rows_at(const dc_comm *c, const void *local, int64_t local_rows, size_t row_bytes,
                            void *all, const char *file, int line) {
    if (c->world <= 1) {
        if (local_rows > 0 && all != local) memcpy(all, local, (size_t)local_rows * row_bytes);
        return;
    }
    dc_comm_check_site(c, "gather_rows", file, line);
    if (local_rows > INT_MAX) dc_fatal("gather: %lld rows on one rank exceed INT_MAX", (long long)local_rows);
    MPI_Datatype row;
    MPI_CHECK(
        MPI_Type_contiguous((int)row_bytes, MPI_BYTE, &row)); /* row_bytes: a few KB, far below INT_MAX */
    MPI_CHECK(MPI_Type_commit(&row));
    int n = (int)local_rows;
    int *counts = NULL, *displs = NULL;
    if (c->rank == 0) {
        counts = malloc(sizeof(int) * (size_t)c->world);
        displs = malloc(sizeof(int) * (size_t)c->world);
        if (!counts || !displs) dc_fatal("out of memory in gather");
    }
    MPI_CHECK(MPI_Gather(&n, 1, MPI_INT, counts, 1, MPI_INT, 0, MPI_COMM_WORLD));
    if (c->rank == 0) {
        int64_t off = 0;
        for (int r = 0; r < c->world; r++) {
            if (off > INT_MAX) dc_fatal("gather: %lld rows exceed INT_MAX", (long long)off);
            displs[r] = (int)off;
            off += counts[r];
        }
    }
    MPI_CHECK(MPI_Gatherv(local, n, row, all, counts, displs, row, 0, MPI_COMM_WORLD));
    MPI_Type_free(&row);
    free(counts);
    free(displs);
}
