/*
 * prefetch.c: the decoding pool of streaming datasets (ImageNet-LT, Places-LT, iNat: too big for memory).
 *
 * A fixed set of pthreads decodes batches in the background while the trainer computes. A batch lives in a
 * slot: the request (indices, augment, seed, epoch) and an output buffer for n samples. The queue is the
 * slots themselves: a worker claims the next unclaimed sample position of the oldest running slot, reads the
 * file, decodes it with the DCT-scaling hint (dc_transform_min_side), applies the transform into the slot's
 * output, and counts it done. With DC_PREFETCH_SLOTS = 2 at most two batches are in flight, which bounds the
 * memory to two batches of floats (2 x 64 x 3 x 224 x 224 x 4 B = 77 MB for a per-rank batch of 64).
 *
 *   trainer:  prefetch(b0)  get(b0) prefetch(b1) [compute b0]  get(b1) prefetch(b2) [compute b1] ...
 *   pool:        decode b0 ......  decode b1 ...................  decode b2 ..................
 *
 * get (collect) finds the slot holding the same request, waits for it to finish and copies the floats out
 * (a memcpy is ~1 ms per 64 images, against ~5 ms of decoding per image). A request that is not in flight is
 * submitted and waited for, so get_batch works without prefetch too. Submitting into full slots cancels the
 * oldest batch: its unclaimed samples are dropped and its claimed ones finish first (a worker never writes
 * into a slot that has been handed out again).
 *
 * Errors: a worker's error message is thread-local, so it is copied into the slot; the error of the lowest
 * failing batch position is the one reported, so the message does not depend on thread timing. Every sample
 * is a pure function of (index, augment, seed, epoch) (see dc_dataset_stream_sample), so which thread decodes
 * it does not matter.
 */
#include "datasets/dataset_internal.h"

#include "core/check.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define DC_PREFETCH_SLOTS 2

typedef enum { SLOT_FREE = 0, SLOT_RUNNING, SLOT_READY } slot_state;

typedef struct {
    slot_state state;
    uint64_t ticket; /* submission order: the oldest slot is served and evicted first */
    int64_t *idx;    /* [n] */
    int n, idx_cap;
    int augment, epoch;
    uint64_t seed;
    float *out;     /* [n][per] */
    size_t out_cap; /* floats */
    int next;       /* next position to claim */
    int limit;      /* claims stop here (n, or where the batch was cancelled) */
    int done;       /* positions finished */
    int err_pos;    /* lowest failing position, n when none */
    char err[1024];
} pf_slot;

typedef struct {
    dc_prefetch *pf;
    int id;
    pthread_t thread;
    dc_decode_buf buf;
} pf_worker;

struct dc_prefetch {
    dc_dataset *ds;
    size_t per; /* floats per sample */
    pthread_mutex_t mu;
    pthread_cond_t work_cv; /* a slot has claimable samples, or stop */
    pthread_cond_t done_cv; /* a slot finished, or a cancelled slot drained */
    int stop;
    uint64_t next_ticket;
    pf_slot slots[DC_PREFETCH_SLOTS];
    pf_worker *workers;
    int n_workers;
};

/* The oldest running slot with a sample left to claim. Called with mu held. */
static pf_slot *claimable_slot(dc_prefetch *pf) {
    pf_slot *best = NULL;
    for (int s = 0; s < DC_PREFETCH_SLOTS; s++) {
        pf_slot *sl = &pf->slots[s];
        if (sl->state == SLOT_RUNNING && sl->next < sl->limit && (!best || sl->ticket < best->ticket))
            best = sl;
    }
    return best;
}

static void *worker_main(void *arg) {
    pf_worker *w = arg;
    dc_prefetch *pf = w->pf;
    pthread_mutex_lock(&pf->mu);
    for (;;) {
        pf_slot *sl;
        while (!pf->stop && (sl = claimable_slot(pf)) == NULL) pthread_cond_wait(&pf->work_cv, &pf->mu);
        if (pf->stop) break;
        int pos = sl->next++;
        pthread_mutex_unlock(&pf->mu);

        /* The request fields and the output buffer of a running slot do not change until it is collected. */
        dc_clear_error();
        int rc = dc_dataset_stream_sample(pf->ds, sl->idx[pos], sl->augment, sl->seed, sl->epoch,
                                          sl->out + (size_t)pos * pf->per, &w->buf);

        pthread_mutex_lock(&pf->mu);
        if (rc != DC_OK && pos < sl->err_pos) {
            sl->err_pos = pos;
            snprintf(sl->err, sizeof sl->err, "%s", dc_last_error());
        }
        sl->done++;
        if (sl->done == sl->limit && sl->next >= sl->limit) {
            if (sl->state == SLOT_RUNNING) sl->state = SLOT_READY;
            pthread_cond_broadcast(&pf->done_cv);
        }
    }
    pthread_mutex_unlock(&pf->mu);
    return NULL;
}

int dc_prefetch_create(dc_dataset *ds, int threads, dc_prefetch **out) {
    *out = NULL;
    if (threads < 1) threads = 1;
    dc_prefetch *pf = dc_calloc(1, sizeof *pf);
    if (!pf) return DC_FAIL;
    pf->ds = ds;
    pf->per = (size_t)ds->channels * ds->image_size * ds->image_size;
    pthread_mutex_init(&pf->mu, NULL);
    pthread_cond_init(&pf->work_cv, NULL);
    pthread_cond_init(&pf->done_cv, NULL);
    pf->workers = dc_calloc((size_t)threads, sizeof *pf->workers);
    if (!pf->workers) {
        dc_prefetch_free(pf);
        return DC_FAIL;
    }
    for (int t = 0; t < threads; t++) {
        pf->workers[t].pf = pf;
        pf->workers[t].id = t;
        if (pthread_create(&pf->workers[t].thread, NULL, worker_main, &pf->workers[t]) != 0) {
            dc_prefetch_free(pf);
            return DC_ERR("%s: cannot start decoding thread %d of %d (training_opt.decode_threads)",
                          ds->list.source, t + 1, threads);
        }
        pf->n_workers = t + 1;
    }
    *out = pf;
    return DC_OK;
}

void dc_prefetch_free(dc_prefetch *pf) {
    if (!pf) return;
    pthread_mutex_lock(&pf->mu);
    pf->stop = 1;
    pthread_cond_broadcast(&pf->work_cv);
    pthread_mutex_unlock(&pf->mu);
    for (int t = 0; t < pf->n_workers; t++) pthread_join(pf->workers[t].thread, NULL);
    if (pf->workers)
        for (int t = 0; t < pf->n_workers; t++) dc_decode_buf_free(&pf->workers[t].buf);
    free(pf->workers);
    for (int s = 0; s < DC_PREFETCH_SLOTS; s++) {
        free(pf->slots[s].idx);
        free(pf->slots[s].out);
    }
    pthread_mutex_destroy(&pf->mu);
    pthread_cond_destroy(&pf->work_cv);
    pthread_cond_destroy(&pf->done_cv);
    free(pf);
}

static int same_request(const pf_slot *sl, const int64_t *idx, int n, int augment, uint64_t seed, int epoch) {
    return sl->state != SLOT_FREE && sl->n == n && sl->augment == augment && sl->seed == seed &&
           sl->epoch == epoch && memcmp(sl->idx, idx, sizeof(int64_t) * (size_t)n) == 0;
}

/* Called with mu held. */
static pf_slot *find_request(dc_prefetch *pf, const int64_t *idx, int n, int augment, uint64_t seed,
                             int epoch) {
    for (int s = 0; s < DC_PREFETCH_SLOTS; s++)
        if (same_request(&pf->slots[s], idx, n, augment, seed, epoch)) return &pf->slots[s];
    return NULL;
}

/* Cancels a slot: no new claims; waits for the claimed samples to finish. Called with mu held. */
static void drain_slot(dc_prefetch *pf, pf_slot *sl) {
    if (sl->state == SLOT_RUNNING) {
        sl->limit = sl->next;
        while (sl->done < sl->next) pthread_cond_wait(&pf->done_cv, &pf->mu);
    }
    sl->state = SLOT_FREE;
}

/* Places a request in a free slot (evicting the oldest if none is free). Called with mu held. */
static int submit_locked(dc_prefetch *pf, const int64_t *idx, int n, int augment, uint64_t seed, int epoch,
                         pf_slot **out) {
    pf_slot *sl = find_request(pf, idx, n, augment, seed, epoch);
    if (sl) {
        *out = sl;
        return DC_OK;
    }
    for (int s = 0; s < DC_PREFETCH_SLOTS && !sl; s++)
        if (pf->slots[s].state == SLOT_FREE) sl = &pf->slots[s];
    if (!sl) {
        sl = &pf->slots[0];
        for (int s = 1; s < DC_PREFETCH_SLOTS; s++)
            if (pf->slots[s].ticket < sl->ticket) sl = &pf->slots[s];
        drain_slot(pf, sl);
    }
    /* The slot is free, no worker touches it: its buffers may grow. */
    if (n > sl->idx_cap) {
        int64_t *grown = realloc(sl->idx, sizeof(int64_t) * (size_t)n);
        if (!grown) return DC_ERR("prefetch: out of memory for %d indices", n);
        sl->idx = grown;
        sl->idx_cap = n;
    }
    size_t floats = pf->per * (size_t)n;
    if (floats > sl->out_cap) {
        float *grown = dc_malloc(sizeof(float) * floats);
        if (!grown) return DC_FAIL;
        free(sl->out);
        sl->out = grown;
        sl->out_cap = floats;
    }
    memcpy(sl->idx, idx, sizeof(int64_t) * (size_t)n);
    sl->n = n;
    sl->augment = augment;
    sl->seed = seed;
    sl->epoch = epoch;
    sl->next = 0;
    sl->limit = n;
    sl->done = 0;
    sl->err_pos = n;
    sl->err[0] = '\0';
    sl->ticket = pf->next_ticket++;
    sl->state = SLOT_RUNNING;
    pthread_cond_broadcast(&pf->work_cv);
    *out = sl;
    return DC_OK;
}

int dc_prefetch_submit(dc_prefetch *pf, const int64_t *idx, int n, int augment, uint64_t seed, int epoch) {
    pf_slot *sl = NULL;
    pthread_mutex_lock(&pf->mu);
    int rc = submit_locked(pf, idx, n, augment, seed, epoch, &sl);
    pthread_mutex_unlock(&pf->mu);
    return rc;
}

int dc_prefetch_collect(dc_prefetch *pf, const int64_t *idx, int n, int augment, uint64_t seed, int epoch,
                        float *out) {
    pf_slot *sl = NULL;
    pthread_mutex_lock(&pf->mu);
    int rc = submit_locked(pf, idx, n, augment, seed, epoch, &sl);
    if (rc != DC_OK) {
        pthread_mutex_unlock(&pf->mu);
        return rc;
    }
    while (sl->state != SLOT_READY) pthread_cond_wait(&pf->done_cv, &pf->mu);
    pthread_mutex_unlock(&pf->mu);

    /* READY slots are not touched by workers; only this (driving) thread frees them. */
    if (sl->err_pos < sl->n)
        rc = DC_ERR("%s", sl->err);
    else
        memcpy(out, sl->out, sizeof(float) * pf->per * (size_t)n);

    pthread_mutex_lock(&pf->mu);
    sl->state = SLOT_FREE;
    pthread_mutex_unlock(&pf->mu);
    return rc;
}
