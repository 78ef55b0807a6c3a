/*
 * test_sampler_sharding.c: the distributed contract of samplers/sampler.h.
 *
 * For every strategy, with and without the in-batch shuffle, and world sizes R in {1, 2, 3, 8} (B = 48):
 *   - the ranks' shares of a step, concatenated in rank order, are the global batch (so they are disjoint
 *     slices of the stream and their union is the global batch), and the global batch is the same for every
 * R;
 *   - over an epoch, every sample occurs in the union of the shares exactly as often as in the global stream;
 *   - a sampler resumed at (epoch, step) from a fresh instance reproduces the rest bit for bit;
 *   - two instances with the same seed agree, a different seed differs;
 *   - the in-batch shuffle permutes each global batch of the unshuffled stream;
 *   - B % R != 0 fails with a message naming training_opt.batch_size and the world size.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "samplers/sampler.h"
#include "tests/testutil.h"

#define C_LT     10
#define B_GLOBAL 48

static const int worlds[4] = {1, 2, 3, 8};

/* Long-tailed labels n_i = int(500 * 0.01^(i/9)) (N = 1236), spread over the index range. */
static int32_t *make_lt_labels(int64_t *N_out) {
    int64_t counts[C_LT], N = 0;
    for (int i = 0; i < C_LT; i++) N += counts[i] = (int64_t)(500.0 * pow(0.01, i / 9.0));
    int32_t *labels = malloc((size_t)N * sizeof *labels);
    int64_t p = 0;
    for (int c = 0; c < C_LT; c++)
        for (int64_t j = 0; j < counts[c]; j++) labels[p++] = c;
    uint64_t x = 999;
    for (int64_t i = N - 1; i > 0; i--) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        int64_t j = (int64_t)((x >> 33) % (uint64_t)(i + 1));
        int32_t t = labels[i];
        labels[i] = labels[j];
        labels[j] = t;
    }
    *N_out = N;
    return labels;
}

static dc_sampler *make(dc_sampler_type type, const int32_t *labels, int64_t N, uint64_t seed, int R,
                        int shuffle) {
    dc_sampler_cfg cfg = {type, 4, 0.5, 6};
    dc_sampler *s = NULL;
    int rc = dc_sampler_create(&cfg, labels, N, C_LT, seed, 6, B_GLOBAL, R, shuffle, &s);
    if (rc != DC_OK) fprintf(stderr, "create failed: %s\n", dc_last_error());
    REQUIRE(rc == DC_OK && s);
    return s;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static const char *type_names[4] = {"instance", "class-aware", "power", "progressive"};

static void test_shares(void) {
    int64_t N;
    int32_t *labels = make_lt_labels(&N);
    int64_t global[B_GLOBAL], ref[B_GLOBAL], share[B_GLOBAL], joined[B_GLOBAL];
    int64_t *count_stream = calloc((size_t)N, sizeof(int64_t)),
            *count_union = calloc((size_t)N, sizeof(int64_t));
    for (int type = DC_SAMPLER_INSTANCE; type <= DC_SAMPLER_PROGRESSIVE; type++)
        for (int shuffle = 0; shuffle < 2; shuffle++) {
            dc_sampler *one = make((dc_sampler_type)type, labels, N, 2024, 1, shuffle);
            for (int wi = 0; wi < 4; wi++) {
                const int R = worlds[wi], local = B_GLOBAL / R;
                dc_sampler *s = make((dc_sampler_type)type, labels, N, 2024, R, shuffle);
                EXPECT(dc_sampler_local_batch_size(s) == local && dc_sampler_world_size(s) == R);
                EXPECT(dc_sampler_steps_per_epoch(s) == N / B_GLOBAL);
                int concat_ok = 1, world_ok = 1, disjoint_ok = 1, counts_ok = 1;
                for (int e = 0; e < 3; e++) {
                    REQUIRE(dc_sampler_set_epoch(s, e) == DC_OK && dc_sampler_set_epoch(one, e) == DC_OK);
                    memset(count_stream, 0, (size_t)N * sizeof(int64_t));
                    memset(count_union, 0, (size_t)N * sizeof(int64_t));
                    for (int64_t step = 0; step < dc_sampler_steps_per_epoch(s); step++) {
                        REQUIRE(dc_sampler_global_batch(s, step, global) == DC_OK);
                        REQUIRE(dc_sampler_global_batch(one, step, ref) == DC_OK);
                        if (memcmp(global, ref, sizeof global) != 0) world_ok = 0;
                        for (int r = 0; r < R; r++) {
                            REQUIRE(dc_sampler_rank_batch(s, step, r, share) == DC_OK);
                            memcpy(joined + r * local, share, (size_t)local * sizeof *share);
                            for (int i = 0; i < local; i++) count_union[share[i]]++;
                        }
                        if (memcmp(joined, global, sizeof global) != 0) concat_ok = 0;
                        for (int i = 0; i < B_GLOBAL; i++) count_stream[global[i]]++;
                        /* Instance-balanced draws without replacement: the shares are disjoint sample sets.
                         */
                        if (type == DC_SAMPLER_INSTANCE) {
                            qsort(joined, B_GLOBAL, sizeof *joined, cmp_i64);
                            for (int i = 1; i < B_GLOBAL; i++)
                                if (joined[i] == joined[i - 1]) disjoint_ok = 0;
                        }
                    }
                    for (int64_t i = 0; i < N; i++)
                        if (count_union[i] != count_stream[i]) counts_ok = 0;
                }
                EXPECTF(concat_ok, "%s shuffle=%d R=%d: shares do not tile the global batch",
                        type_names[type], shuffle, R);
                EXPECTF(world_ok, "%s shuffle=%d R=%d: the global batch depends on the world size",
                        type_names[type], shuffle, R);
                EXPECTF(disjoint_ok, "%s R=%d: a sample appears on two ranks in one step", type_names[type],
                        R);
                EXPECTF(counts_ok,
                        "%s shuffle=%d R=%d: a sample occurs more often in the shares than in the stream",
                        type_names[type], shuffle, R);
                /* Out-of-range rank. */
                EXPECT(dc_sampler_rank_batch(s, 0, R, share) == DC_FAIL && strstr(dc_last_error(), "rank"));
                dc_sampler_free(s);
            }
            dc_sampler_free(one);
        }
    free(count_stream);
    free(count_union);
    free(labels);
}

/* A run reads its batches by the global step counter; a fresh sampler resumed at global step g0 (an epoch
 * and a position inside it) reproduces every later batch of every rank bit for bit. */
static void test_resume(void) {
    int64_t N;
    int32_t *labels = make_lt_labels(&N);
    const int R = 3, local = B_GLOBAL / R;
    for (int type = DC_SAMPLER_INSTANCE; type <= DC_SAMPLER_PROGRESSIVE; type++) {
        dc_sampler *run = make((dc_sampler_type)type, labels, N, 555, R, 1);
        const int64_t steps = dc_sampler_steps_per_epoch(run), total = 4 * steps;
        int64_t *all = malloc((size_t)(total * B_GLOBAL) * sizeof *all);
        for (int64_t g = 0; g < total; g++) {
            int epoch = -1;
            for (int r = 0; r < R; r++)
                REQUIRE(dc_sampler_rank_batch_at(run, g, r, all + (g * R + r) * local, &epoch) == DC_OK);
            EXPECT(epoch == (int)(g / steps));
        }
        const int64_t resume_points[3] = {steps + 7, 2 * steps, 3 * steps - 1};
        for (int i = 0; i < 3; i++) {
            dc_sampler *resumed = make((dc_sampler_type)type, labels, N, 555, R, 1);
            int64_t share[B_GLOBAL];
            int same = 1;
            for (int64_t g = resume_points[i]; g < total; g++)
                for (int r = 0; r < R; r++) {
                    REQUIRE(dc_sampler_rank_batch_at(resumed, g, r, share, NULL) == DC_OK);
                    if (memcmp(share, all + (g * R + r) * local, (size_t)local * sizeof *share) != 0)
                        same = 0;
                }
            EXPECTF(same, "%s: resume at global step %lld differs", type_names[type],
                    (long long)resume_points[i]);
            dc_sampler_free(resumed);
        }
        /* Resuming with another world size gives the same global batches (R = 8 vs the R = 3 run). */
        dc_sampler *other = make((dc_sampler_type)type, labels, N, 555, 8, 1);
        int same = 1;
        for (int64_t g = 2 * steps + 3; g < total; g++) {
            int64_t share[B_GLOBAL];
            for (int r = 0; r < 8; r++) {
                REQUIRE(dc_sampler_rank_batch_at(other, g, r, share, NULL) == DC_OK);
                if (memcmp(share, all + g * B_GLOBAL + r * (B_GLOBAL / 8), (B_GLOBAL / 8) * sizeof *share) !=
                    0)
                    same = 0;
            }
        }
        EXPECTF(same, "%s: resume with world size 8 differs from the world size 3 run", type_names[type]);
        dc_sampler_free(other);
        EXPECT(dc_sampler_rank_batch_at(run, -1, 0, all, NULL) == DC_FAIL);
        free(all);
        dc_sampler_free(run);
    }
    free(labels);
}

static void test_determinism_and_shuffle(void) {
    int64_t N;
    int32_t *labels = make_lt_labels(&N);
    for (int type = DC_SAMPLER_INSTANCE; type <= DC_SAMPLER_PROGRESSIVE; type++) {
        dc_sampler *a = make((dc_sampler_type)type, labels, N, 42, 2, 1),
                   *b = make((dc_sampler_type)type, labels, N, 42, 2, 1);
        dc_sampler *c = make((dc_sampler_type)type, labels, N, 43, 2, 1);
        dc_sampler *plain = make((dc_sampler_type)type, labels, N, 42, 2, 0);
        int same_ab = 1, same_ac = 1, perm_ok = 1, reordered = 0;
        for (int e = 0; e < 3; e++) {
            REQUIRE(dc_sampler_set_epoch(a, e) == DC_OK && dc_sampler_set_epoch(b, e) == DC_OK);
            REQUIRE(dc_sampler_set_epoch(c, e) == DC_OK && dc_sampler_set_epoch(plain, e) == DC_OK);
            int64_t la, lb, lc;
            const int64_t *sa = dc_sampler_epoch_stream(a, &la), *sb = dc_sampler_epoch_stream(b, &lb),
                          *sc = dc_sampler_epoch_stream(c, &lc);
            if (la != lb || memcmp(sa, sb, (size_t)la * sizeof *sa) != 0) same_ab = 0;
            if (memcmp(sa, sc, (size_t)la * sizeof *sa) != 0) same_ac = 0;
            for (int64_t step = 0; step < dc_sampler_steps_per_epoch(a); step++) {
                int64_t x[B_GLOBAL], y[B_GLOBAL];
                REQUIRE(dc_sampler_global_batch(a, step, x) == DC_OK);
                REQUIRE(dc_sampler_global_batch(plain, step, y) == DC_OK);
                if (memcmp(x, y, sizeof x) != 0) reordered++;
                qsort(x, B_GLOBAL, sizeof *x, cmp_i64);
                qsort(y, B_GLOBAL, sizeof *y, cmp_i64);
                if (memcmp(x, y, sizeof x) != 0) perm_ok = 0;
            }
        }
        EXPECTF(same_ab, "%s: two instances with the same seed differ", type_names[type]);
        EXPECTF(!same_ac, "%s: seeds 42 and 43 give the same stream", type_names[type]);
        EXPECTF(perm_ok, "%s: a shuffled global batch is not a permutation of the unshuffled one",
                type_names[type]);
        /* 48! orders: a batch left unchanged by the shuffle would be a defect (or a 1-in-10^61 event). */
        EXPECTF(reordered == 3 * (int)dc_sampler_steps_per_epoch(a), "%s: only %d of %d batches reordered",
                type_names[type], reordered, 3 * (int)dc_sampler_steps_per_epoch(a));
        dc_sampler_free(a);
        dc_sampler_free(b);
        dc_sampler_free(c);
        dc_sampler_free(plain);
    }

    /* The shuffle mixes the class-aware groups across ranks: without it, each rank of R = 8 sees 6 samples
     * from at most 3 classes (groups of k = 4); with it, the number of classes per rank-step rises. */
    dc_sampler *grouped = make(DC_SAMPLER_CLASS_AWARE, labels, N, 8, 8, 0);
    dc_sampler *mixed = make(DC_SAMPLER_CLASS_AWARE, labels, N, 8, 8, 1);
    REQUIRE(dc_sampler_set_epoch(grouped, 0) == DC_OK && dc_sampler_set_epoch(mixed, 0) == DC_OK);
    double classes_grouped = 0, classes_mixed = 0;
    int64_t n_shares = 0;
    for (int64_t step = 0; step < dc_sampler_steps_per_epoch(grouped); step++)
        for (int r = 0; r < 8; r++) {
            int64_t share[6];
            int seen_g[C_LT] = {0}, seen_m[C_LT] = {0};
            REQUIRE(dc_sampler_rank_batch(grouped, step, r, share) == DC_OK);
            for (int i = 0; i < 6; i++) classes_grouped += !seen_g[labels[share[i]]]++;
            REQUIRE(dc_sampler_rank_batch(mixed, step, r, share) == DC_OK);
            for (int i = 0; i < 6; i++) classes_mixed += !seen_m[labels[share[i]]]++;
            n_shares++;
        }
    printf("class-aware k=4, R=8: distinct classes per rank batch of 6: %.2f without, %.2f with in-batch "
           "shuffle\n",
           classes_grouped / n_shares, classes_mixed / n_shares);
    EXPECT(classes_grouped / n_shares <= 3.0);
    EXPECT(classes_mixed / n_shares > classes_grouped / n_shares + 1.0);
    dc_sampler_free(grouped);
    dc_sampler_free(mixed);
    free(labels);
}

static void test_indivisible_batch(void) {
    int64_t N;
    int32_t *labels = make_lt_labels(&N);
    dc_sampler_cfg cfg = {DC_SAMPLER_INSTANCE, 4, 1.0, 0};
    const int cases[3][2] = {{48, 5}, {50, 8}, {10, 3}};
    for (int i = 0; i < 3; i++) {
        dc_sampler *s = NULL;
        dc_clear_error();
        int rc = dc_sampler_create(&cfg, labels, N, C_LT, 1, 10, cases[i][0], cases[i][1], 0, &s);
        char world[32];
        snprintf(world, sizeof world, "world size %d", cases[i][1]);
        EXPECTF(rc == DC_FAIL && !s && strstr(dc_last_error(), "training_opt.batch_size") &&
                    strstr(dc_last_error(), "not divisible") && strstr(dc_last_error(), world),
                "B=%d R=%d: got rc %d, '%s'", cases[i][0], cases[i][1], rc, dc_last_error());
    }
    dc_sampler *s = NULL;
    EXPECT(dc_sampler_create(&cfg, labels, N, C_LT, 1, 10, 48, 0, 0, &s) == DC_FAIL);
    free(labels);
}

int main(void) {
    test_shares();
    test_resume();
    test_determinism_and_shuffle();
    test_indivisible_batch();
    return tu_finish("test_sampler_sharding");
}
