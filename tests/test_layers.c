/*
 * test_layers.c: every layer of layers.h (batch norm, ReLU / add / add+ReLU, max and average pool, linear,
 * softmax cross-entropy).
 *
 * What is checked, and how:
 *  - Gradients by central finite differences for every layer and every parameter. The scalar is
 *    L = sum_i y_i r_i with a fixed random r, accumulated in double; the analytic side is backward with
 *    dy = r. The step actually taken is (float)(p + eps) - (float)(p - eps), so the rounding of p + eps does
 *    not count as error. Errors are measured as ||analytic - numeric||_inf / ||numeric||_inf and each
 *    tolerance is justified where it is set.
 *  - Overwrite / accumulate semantics: dx is pre-filled with NaN (must be overwritten), parameter gradients
 *    with known values (must be added to).
 *  - Batch norm: running statistics (momentum, unbiased variance) and the saved mean / rstd against a double
 *    computation in the test; the eval formula; a two-"rank" sync-BN run (two threads and a fake allreduce)
 *    that must reproduce single-process BN on the full batch; thread-count determinism; dx aliasing dy.
 *  - Max pool against a naive implementation that materialises the -inf padding; the first-maximum
 *    tie-break; padding never winning; NaN propagation.
 *  - Softmax CE: the loss against a direct double computation, offset == shifted logits, shift invariance
 *    with huge logits, thread-count determinism, the NaN for a bad label.
 *  - PyTorch 1.13 golden values (tests/gen_layer_fixtures.py -> tests/fixtures/layers_golden.bin) for BN
 *    train/eval with and without fused ReLU, max pool (ties, padding, overlap) and CE with and without
 * offset.
 */
#include "core/layers.h"
#include "core/rng.h"
#include "tests/testutil.h"

#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------------------------------------- */

static dc_rng test_rng(uint64_t stream) {
    return dc_rng_make(dc_rng_key(20200214, DC_RNG_INIT, 777, stream));
}

static void fill_normal(dc_rng *r, float *p, long n, double mean, double std) {
    for (long i = 0; i < n; i++) p[i] = (float)(mean + std * dc_rng_normal(r));
}

static void fill_uniform(dc_rng *r, float *p, long n, double lo, double hi) {
    for (long i = 0; i < n; i++) p[i] = (float)(lo + (hi - lo) * dc_rng_uniform_d(r));
}

static float *falloc(long n) {
    float *p = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    REQUIRE(p != NULL);
    return p;
}

static void fill_value(float *p, long n, float v) {
    for (long i = 0; i < n; i++) p[i] = v;
}

static double dot_d(const float *a, const float *b, long n) {
    double s = 0;
    for (long i = 0; i < n; i++) s += (double)a[i] * (double)b[i];
    return s;
}

static int all_equal_bits(const float *a, const float *b, long n) {
    return memcmp(a, b, (size_t)n * sizeof(float)) == 0;
}

/* Central differences of loss(ctx) w.r.t. every element of p, compared with `analytic`. Returns the relative
 * error ||analytic - numeric||_inf / ||numeric||_inf. */
typedef double (*loss_fn)(void *ctx);

static double fd_check(const char *what, loss_fn loss, void *ctx, float *p, long n, float eps,
                       const float *analytic) {
    float *num = falloc(n);
    for (long i = 0; i < n; i++) {
        float orig = p[i];
        p[i] = orig + eps;
        float hp = p[i];
        double lp = loss(ctx);
        p[i] = orig - eps;
        float hm = p[i];
        double lm = loss(ctx);
        p[i] = orig;
        num[i] = (float)((lp - lm) / ((double)hp - (double)hm));
    }
    double err = tu_tensor_rel_err(analytic, num, n, 1e-30);
    printf("  fd %-28s n=%-4ld eps=%-8.1e rel err %.2e\n", what, n, (double)eps, err);
    free(num);
    return err;
}

/* =======================================================================================================
 * Batch norm
 * ======================================================================================================= */

typedef struct {
    int C;
    int64_t M;
    float *x, *gamma, *beta, *r;
    int relu;
    /* throwaway outputs of the loss evaluations */
    float *y, *mean, *rstd, *rm, *rv;
    double *scratch;
} bn_ctx;

static double bn_loss(void *vctx) {
    bn_ctx *b = vctx;
    dc_bn_forward_train(b->C, b->M, b->x, b->gamma, b->beta, b->y, b->mean, b->rstd, b->rm, b->rv, 0.1f,
                        1e-5f, b->relu, NULL, b->scratch);
    return dot_d(b->y, b->r, (long)b->C * b->M);
}

/* Double-precision batch statistics of channel c (the test's independent reference). */
static void bn_ref_stats(const float *x, int64_t M, double *mean, double *var) {
    double s = 0, q = 0;
    for (int64_t i = 0; i < M; i++) s += x[i];
    *mean = s / (double)M;
    for (int64_t i = 0; i < M; i++) q += (x[i] - *mean) * (x[i] - *mean);
    *var = q / (double)M;
}

/* Smallest |gamma*xhat + beta| over channel c: the distance of the pre-ReLU values from the kink. */
static double bn_relu_margin(const float *x, int64_t M, float gamma, float beta) {
    double mean, var, margin = INFINITY;
    bn_ref_stats(x, M, &mean, &var);
    for (int64_t i = 0; i < M; i++) {
        double pre = gamma * (x[i] - mean) / sqrt(var + 1e-5) + beta;
        if (fabs(pre) < margin) margin = fabs(pre);
    }
    return margin;
}

static void test_bn_gradients(int relu) {
    printf("bn gradients (relu=%d)\n", relu);
    const int C = 3, N = 4, HW = 5;
    const int64_t M = (int64_t)N * HW;
    const long n = C * M;
    dc_rng r = test_rng(100 + relu);
    bn_ctx b = {.C = C, .M = M, .relu = relu};
    b.x = falloc(n), b.gamma = falloc(C), b.beta = falloc(C), b.r = falloc(n), b.y = falloc(n);
    b.mean = falloc(C), b.rstd = falloc(C), b.rm = falloc(C), b.rv = falloc(C);
    b.scratch = malloc(2 * C * sizeof(double));
    const float chan_mean[3] = {2.0f, -0.5f, 0.0f}, chan_std[3] = {0.7f, 1.5f, 1.0f};
    fill_uniform(&r, b.gamma, C, 0.5, 1.5);
    b.gamma[1] = -b.gamma[1]; /* a negative scale flips which side of the kink survives */
    fill_uniform(&r, b.beta, C, -0.5, 0.5);
    fill_normal(&r, b.r, n, 0, 1);
    for (int c = 0; c < C; c++) {
        float *xc = b.x + c * M;
        int tries = 0;
        do fill_normal(&r, xc, M, chan_mean[c], chan_std[c]);
        /* with ReLU keep every pre-activation >= 0.05 away from 0: a step of eps = 4e-3 in x moves the
         * pre-activations by at most |gamma|*rstd*eps*(1 + O(1/M)) < 1.5/0.5*4e-3*1.1 = 0.013 (|gamma|
         * <= 1.5, sample std >= ~0.5 for these channels), so no difference quotient straddles the kink */
        while (relu && bn_relu_margin(xc, M, b.gamma[c], b.beta[c]) < 0.05 && ++tries < 1000);
        REQUIRE(tries < 1000);
    }

    /* analytic gradients; dgamma/dbeta start at known values to check accumulation, dx at NaN */
    float *y = falloc(n), *mean = falloc(C), *rstd = falloc(C), *rm = falloc(C), *rv = falloc(C);
    float *dx = falloc(n), *dgamma = falloc(C), *dbeta = falloc(C);
    fill_value(rm, C, 0), fill_value(rv, C, 1);
    dc_bn_forward_train(C, M, b.x, b.gamma, b.beta, y, mean, rstd, rm, rv, 0.1f, 1e-5f, relu, NULL,
                        b.scratch);
    fill_value(dx, n, NAN);
    fill_value(dgamma, C, 0.25f), fill_value(dbeta, C, -0.5f);
    dc_bn_backward(C, M, b.x, y, b.r, b.gamma, mean, rstd, relu, dx, dgamma, dbeta, NULL, b.scratch);
    for (int c = 0; c < C; c++) dgamma[c] -= 0.25f, dbeta[c] += 0.5f;

    if (relu) {
        long zeros = 0;
        for (long i = 0; i < n; i++) zeros += y[i] == 0.0f;
        EXPECTF(zeros > n / 5 && zeros < 4 * n / 5,
                "only %ld of %ld outputs clipped: the ReLU is not exercised", zeros, n);
    }
    /* BN is smooth (away from the ReLU kink); central differences have truncation error ~eps^2 f''' / 6 and
     * rounding error ~ sqrt(n) * 6e-8 * |L| / eps from the float32 forward, each estimated <~1e-4 relative
     * for unit-scale x (measured: 1.5e-5 with eps = 1e-2; 5e-5 with the smaller eps = 4e-3 the ReLU case
     * needs). 2e-3 is a >10x margin and still catches a wrong or missing term in dx, which shows at the
     * 1e-1 level. The loss is exactly linear in gamma and beta as long as no pre-activation crosses the
     * kink (a step of 1e-2 moves them by <= 1e-2 * |xhat| <~ 0.03 < the 0.05 margin), so only rounding
     * remains there (measured ~1e-6). */
    EXPECT(fd_check("bn dx", bn_loss, &b, b.x, n, relu ? 4e-3f : 1e-2f, dx) < 2e-3);
    EXPECT(fd_check("bn dgamma", bn_loss, &b, b.gamma, C, 1e-2f, dgamma) < 2e-3);
    EXPECT(fd_check("bn dbeta", bn_loss, &b, b.beta, C, 1e-2f, dbeta) < 2e-3);

    /* dx may alias dy: same result as the separate buffer */
    float *inplace = falloc(n);
    memcpy(inplace, b.r, (size_t)n * sizeof(float));
    float dg2[3] = {0}, db2[3] = {0};
    dc_bn_backward(C, M, b.x, y, inplace, b.gamma, mean, rstd, relu, inplace, dg2, db2, NULL, b.scratch);
    EXPECT(all_equal_bits(inplace, dx, n));

    free(inplace);
    free(y), free(mean), free(rstd), free(rm), free(rv), free(dx), free(dgamma), free(dbeta);
    free(b.x), free(b.gamma), free(b.beta), free(b.r), free(b.y), free(b.mean), free(b.rstd), free(b.rm);
    free(b.rv), free(b.scratch);
}

/* Running statistics, saved statistics and the eval formula against double computations. */
static void test_bn_statistics(void) {
    printf("bn statistics\n");
    const int C = 4;
    const int64_t M = 50;
    const long n = C * M;
    dc_rng r = test_rng(110);
    float *x = falloc(n), *y = falloc(n), *gamma = falloc(C), *beta = falloc(C);
    float mean[4], rstd[4], rm[4], rv[4], rm0[4], rv0[4];
    double scratch[8];
    /* channel 3 has mean 1000 and std 0.5: a one-pass float variance would be all noise */
    const double mu[4] = {0, 3, -2, 1000}, sd[4] = {1, 0.1, 4, 0.5};
    for (int c = 0; c < C; c++) fill_normal(&r, x + c * M, M, mu[c], sd[c]);
    fill_uniform(&r, gamma, C, 0.5, 2), fill_uniform(&r, beta, C, -1, 1);
    fill_uniform(&r, rm0, C, -1, 1), fill_uniform(&r, rv0, C, 0.5, 2);
    memcpy(rm, rm0, sizeof rm), memcpy(rv, rv0, sizeof rv);
    const float momentum = 0.1f, eps = 1e-5f;
    dc_bn_forward_train(C, M, x, gamma, beta, y, mean, rstd, rm, rv, momentum, eps, 0, NULL, scratch);

    double worst_stat = 0, worst_y = 0;
    for (int c = 0; c < C; c++) {
        double m, v;
        bn_ref_stats(x + c * M, M, &m, &v);
        double want_rstd = 1.0 / sqrt(v + eps);
        double want_rm = (1 - (double)momentum) * rm0[c] + (double)momentum * m;
        double want_rv = (1 - (double)momentum) * rv0[c] + (double)momentum * v * M / (M - 1.0);
        /* float32 storage of a value computed in double: relative error <= 2^-24 ~ 6e-8, plus the mean is
         * rounded to float before the variance is taken about it (relative 6e-8 of |mean|/std for rstd):
         * 1e-6 relative is a 16x margin and far below the 1/M = 2% a biased/unbiased mix-up would cause. */
        double e1 = fabs(mean[c] - m) / (fabs(m) + 1e-3);
        double e2 = fabs(rstd[c] - want_rstd) / want_rstd;
        double e3 = fabs(rm[c] - want_rm) / (fabs(want_rm) + 1e-3);
        double e4 = fabs(rv[c] - want_rv) / want_rv;
        EXPECTF(e1 < 1e-6 && e2 < 1e-6 && e3 < 1e-6 && e4 < 1e-6,
                "channel %d: mean %.2e rstd %.2e rm %.2e rv %.2e", c, e1, e2, e3, e4);
        worst_stat = fmax(worst_stat, fmax(fmax(e1, e2), fmax(e3, e4)));
        for (int64_t i = 0; i < M; i++) {
            double want = gamma[c] * (x[c * M + i] - m) * want_rstd + beta[c];
            double e = fabs(y[c * M + i] - want) / (fabs(want) + 1);
            worst_y = fmax(worst_y, e);
        }
    }
    /* y = gamma*(x - mean)*rstd + beta in float: a few ulps of |gamma*xhat| (<= ~4) plus the float mean's
     * rounding (6e-8 * 1000 / 0.5 ~ 1.2e-4 of a std for channel 3, scaled by gamma <= 2); 1e-3 absolute on
     * unit-scale outputs is well above that and well below any formula error. */
    EXPECTF(worst_y < 1e-3, "train y err %.2e", worst_y);
    printf("  running/saved stats max rel err %.2e, train y err %.2e\n", worst_stat, worst_y);

    /* eval mode: y = gamma*(x - running_mean)/sqrt(running_var + eps) + beta, with and without ReLU */
    for (int relu = 0; relu <= 1; relu++) {
        dc_bn_forward_eval(C, M, x, gamma, beta, rm0, rv0, eps, relu, y);
        double worst = 0;
        for (int c = 0; c < C; c++)
            for (int64_t i = 0; i < M; i++) {
                double want =
                    gamma[c] * (x[c * M + i] - (double)rm0[c]) / sqrt((double)rv0[c] + eps) + beta[c];
                if (relu && want < 0) want = 0;
                worst = fmax(worst, fabs(y[c * M + i] - want) / (fabs(want) + 1));
            }
        /* relative to |y| + 1: (x - running_mean) is one float rounding, the product and the add a few more,
         * so a few 6e-8; 1e-6 is a wide margin yet far below any formula error (e.g. var vs std: O(1)) */
        EXPECTF(worst < 1e-6, "eval relu=%d err %.2e", relu, worst);
        printf("  eval relu=%d max rel err %.2e\n", relu, worst);
    }

    /* M_total = 1 must not divide by zero: the running variance then moves towards the biased variance 0 */
    float one_x = 5.0f, one_y, one_mean, one_rstd, one_rm = 0, one_rv = 1, g1 = 1, b1 = 0;
    dc_bn_forward_train(1, 1, &one_x, &g1, &b1, &one_y, &one_mean, &one_rstd, &one_rm, &one_rv, 0.1f, eps, 0,
                        NULL, scratch);
    EXPECT(one_y == 0.0f && fabsf(one_rm - 0.5f) < 1e-7f && fabsf(one_rv - 0.9f) < 1e-7f);

    free(x), free(y), free(gamma), free(beta);
}

/* Thread-count determinism (each channel is reduced serially, so 1 and 2 threads must agree bitwise). */
static void test_bn_determinism(void) {
    printf("bn determinism across thread counts\n");
    const int C = 8;
    const int64_t M = 16384; /* C*M above the parallel threshold */
    const long n = C * M;
    dc_rng r = test_rng(120);
    float *x = falloc(n), *dy = falloc(n), *gamma = falloc(C), *beta = falloc(C);
    float *y[2], *dx[2], mean[2][8], rstd[2][8], rm[2][8], rv[2][8], dg[2][8], db[2][8];
    double scratch[16];
    fill_normal(&r, x, n, 0.3, 2), fill_normal(&r, dy, n, 0, 1);
    fill_uniform(&r, gamma, C, 0.5, 1.5), fill_uniform(&r, beta, C, -1, 1);
    int saved = omp_get_max_threads();
    for (int t = 0; t < 2; t++) {
        omp_set_num_threads(t + 1);
        y[t] = falloc(n), dx[t] = falloc(n);
        fill_value(rm[t], C, 0), fill_value(rv[t], C, 1), fill_value(dg[t], C, 0), fill_value(db[t], C, 0);
        dc_bn_forward_train(C, M, x, gamma, beta, y[t], mean[t], rstd[t], rm[t], rv[t], 0.1f, 1e-5f, 1, NULL,
                            scratch);
        dc_bn_backward(C, M, x, y[t], dy, gamma, mean[t], rstd[t], 1, dx[t], dg[t], db[t], NULL, scratch);
    }
    omp_set_num_threads(saved);
    EXPECT(all_equal_bits(y[0], y[1], n) && all_equal_bits(dx[0], dx[1], n));
    EXPECT(all_equal_bits(mean[0], mean[1], C) && all_equal_bits(rstd[0], rstd[1], C));
    EXPECT(all_equal_bits(rv[0], rv[1], C) && all_equal_bits(dg[0], dg[1], C) &&
           all_equal_bits(db[0], db[1], C));
    free(x), free(dy), free(gamma), free(beta);
    for (int t = 0; t < 2; t++) free(y[t]), free(dx[t]);
}

/* ---- sync-BN: two ranks as two threads, with a fake allreduce ------------------------------------------ */

typedef struct {
    pthread_barrier_t barrier;
    double *slot[2];
    int count[2];
    int calls[2];
    int mismatch; /* the ranks called the hook with different sizes: a real allreduce would hang or corrupt */
} fake_world;

typedef struct {
    fake_world *world;
    int rank;
    /* the rank's shard, CNHW [C, n_local, HW] */
    int C, n_local, HW;
    float *x, *dy, *gamma, *beta;
    float *y, *dx, mean[8], rstd[8], rm[8], rv[8], dgamma[8], dbeta[8];
} fake_rank;

/* Sum over both ranks, in rank order on every rank (so both see the same bits), like MPI_Allreduce. */
static void fake_allreduce(double *values, int count, void *ctx) {
    fake_rank *me = ctx;
    fake_world *w = me->world;
    w->slot[me->rank] = values;
    w->count[me->rank] = count;
    w->calls[me->rank]++;
    pthread_barrier_wait(&w->barrier);
    int k = w->count[0] < w->count[1] ? w->count[0] : w->count[1];
    if (w->count[0] != w->count[1]) w->mismatch = 1;
    double *sum = malloc((size_t)(k > 0 ? k : 1) * sizeof(double));
    for (int i = 0; i < k; i++) sum[i] = w->slot[0][i] + w->slot[1][i];
    pthread_barrier_wait(&w->barrier); /* nobody overwrites its values before both have read them */
    memcpy(values, sum, (size_t)k * sizeof(double));
    free(sum);
}

static void *fake_rank_main(void *arg) {
    fake_rank *me = arg;
    dc_bn_reduce reduce = {fake_allreduce, me};
    double scratch[16];
    int64_t M = (int64_t)me->n_local * me->HW;
    dc_bn_forward_train(me->C, M, me->x, me->gamma, me->beta, me->y, me->mean, me->rstd, me->rm, me->rv, 0.1f,
                        1e-5f, 1, &reduce, scratch);
    dc_bn_backward(me->C, M, me->x, me->y, me->dy, me->gamma, me->mean, me->rstd, 1, me->dx, me->dgamma,
                   me->dbeta, &reduce, scratch);
    return NULL;
}

static void test_bn_sync(void) {
    printf("sync-BN over 2 fake ranks (uneven split 2 + 4 images)\n");
    const int C = 5, N = 6, HW = 4, split = 2;
    const int64_t M = (int64_t)N * HW;
    const long n = C * M;
    dc_rng r = test_rng(130);
    float *x = falloc(n), *dy = falloc(n), *gamma = falloc(C), *beta = falloc(C);
    fill_normal(&r, x, n, 1.0, 2.0), fill_normal(&r, dy, n, 0, 1);
    fill_uniform(&r, gamma, C, 0.5, 1.5), fill_uniform(&r, beta, C, -0.5, 0.5);

    /* single process on the full batch */
    float *y = falloc(n), *dx = falloc(n), mean[8], rstd[8], rm[8], rv[8], dgamma[8] = {0}, dbeta[8] = {0};
    double scratch[16];
    fill_value(rm, C, 0.5f), fill_value(rv, C, 2.0f);
    dc_bn_forward_train(C, M, x, gamma, beta, y, mean, rstd, rm, rv, 0.1f, 1e-5f, 1, NULL, scratch);
    dc_bn_backward(C, M, x, y, dy, gamma, mean, rstd, 1, dx, dgamma, dbeta, NULL, scratch);

    /* two ranks: rank 0 holds images [0, split), rank 1 images [split, N) */
    fake_world world = {0};
    pthread_barrier_init(&world.barrier, NULL, 2);
    fake_rank rk[2];
    for (int k = 0; k < 2; k++) {
        int n0 = k == 0 ? 0 : split, nl = k == 0 ? split : N - split;
        fake_rank *p = &rk[k];
        memset(p, 0, sizeof *p);
        p->world = &world, p->rank = k, p->C = C, p->n_local = nl, p->HW = HW;
        long nloc = (long)C * nl * HW;
        p->x = falloc(nloc), p->dy = falloc(nloc), p->y = falloc(nloc), p->dx = falloc(nloc);
        p->gamma = gamma, p->beta = beta;
        for (int c = 0; c < C; c++) {
            memcpy(p->x + (long)c * nl * HW, x + c * M + (long)n0 * HW, (size_t)nl * HW * sizeof(float));
            memcpy(p->dy + (long)c * nl * HW, dy + c * M + (long)n0 * HW, (size_t)nl * HW * sizeof(float));
        }
        fill_value(p->rm, C, 0.5f), fill_value(p->rv, C, 2.0f);
    }
    pthread_t th[2];
    for (int k = 0; k < 2; k++) REQUIRE(pthread_create(&th[k], NULL, fake_rank_main, &rk[k]) == 0);
    for (int k = 0; k < 2; k++) pthread_join(th[k], NULL);
    pthread_barrier_destroy(&world.barrier);
    EXPECTF(!world.mismatch && world.calls[0] == world.calls[1] && world.calls[0] > 0,
            "ranks disagree on the reductions (%d vs %d calls)", world.calls[0], world.calls[1]);

    /* reassemble the shards and compare with the full-batch run. The sums differ only in the grouping of the
     * double additions (rank partials added last), ~1e-16 relative, so the float results agree to 1-2 ulps:
     * 1e-6 relative to the tensor's scale. The local dgamma/dbeta of the ranks add up to the full ones
     * (that sum is what the trainer's gradient allreduce computes). */
    float *ys = falloc(n), *dxs = falloc(n);
    for (int k = 0; k < 2; k++) {
        int n0 = k == 0 ? 0 : split, nl = rk[k].n_local;
        for (int c = 0; c < C; c++) {
            memcpy(ys + c * M + (long)n0 * HW, rk[k].y + (long)c * nl * HW, (size_t)nl * HW * sizeof(float));
            memcpy(dxs + c * M + (long)n0 * HW, rk[k].dx + (long)c * nl * HW,
                   (size_t)nl * HW * sizeof(float));
        }
    }
    float dg_sum[8], db_sum[8];
    for (int c = 0; c < C; c++) {
        dg_sum[c] = rk[0].dgamma[c] + rk[1].dgamma[c];
        db_sum[c] = rk[0].dbeta[c] + rk[1].dbeta[c];
    }
    double e_y = tu_tensor_rel_err(ys, y, n, 1e-30), e_dx = tu_tensor_rel_err(dxs, dx, n, 1e-30);
    EXPECTF(e_y < 1e-6, "y err %.2e", e_y);
    EXPECTF(e_dx < 1e-6, "dx err %.2e", e_dx);
    for (int k = 0; k < 2; k++) {
        EXPECT(tu_max_rel_err(rk[k].mean, mean, C, 1e-6) < 1e-6);
        EXPECT(tu_max_rel_err(rk[k].rstd, rstd, C, 1e-6) < 1e-6);
        EXPECT(tu_max_rel_err(rk[k].rm, rm, C, 1e-6) < 1e-6);
        EXPECT(tu_max_rel_err(rk[k].rv, rv, C, 1e-6) <
               1e-6); /* unbiased with the GLOBAL count 24, not 8/16 */
    }
    EXPECT(tu_tensor_rel_err(dg_sum, dgamma, C, 1e-30) < 1e-5);
    EXPECT(tu_tensor_rel_err(db_sum, dbeta, C, 1e-30) < 1e-5);
    printf("  sync vs full batch: y %.2e, dx %.2e, hook calls per rank %d\n", e_y, e_dx, world.calls[0]);

    /* and the per-rank (no hook) statistics really differ, so the comparison above is not vacuous */
    float lm[8], lr[8], lrm[8], lrv[8], ly[64];
    dc_bn_forward_train(C, (int64_t)split * HW, rk[0].x, gamma, beta, ly, lm, lr, lrm, lrv, 0.1f, 1e-5f, 1,
                        NULL, scratch);
    EXPECT(tu_max_rel_err(lm, mean, C, 1e-6) > 1e-3);

    for (int k = 0; k < 2; k++) free(rk[k].x), free(rk[k].dy), free(rk[k].y), free(rk[k].dx);
    free(x), free(dy), free(gamma), free(beta), free(y), free(dx), free(ys), free(dxs);
}

/* =======================================================================================================
 * ReLU, add, add + ReLU
 * ======================================================================================================= */

typedef struct {
    long n;
    float *a, *b, *y, *r;
    int which; /* 0 relu(a), 1 a + b, 2 relu(a + b) */
} elt_ctx;

static double elt_loss(void *vctx) {
    elt_ctx *e = vctx;
    if (e->which == 0) dc_relu_forward(e->n, e->a, e->y);
    if (e->which == 1) dc_add_forward(e->n, e->a, e->b, e->y);
    if (e->which == 2) dc_add_relu_forward(e->n, e->a, e->b, e->y);
    return dot_d(e->y, e->r, e->n);
}

static void test_eltwise(void) {
    printf("relu / add / add_relu\n");
    const long n = 200;
    dc_rng r = test_rng(200);
    elt_ctx e = {.n = n};
    e.a = falloc(n), e.b = falloc(n), e.y = falloc(n), e.r = falloc(n);
    float *y = falloc(n), *dx = falloc(n);
    /* Keep every input (and a + b) at least 0.1 from the kink at 0, so a step of eps = 2^-10 never crosses
     * it. Inputs are multiples of 2^-12 below 2^6 in magnitude: a, a + b and a +- eps are then exact in
     * float, so no rounding enters the difference quotients either. */
    for (long i = 0; i < n; i++) {
        float v;
        do v = roundf((float)dc_rng_normal(&r) * 4096.0f) / 4096.0f;
        while (fabsf(v) < 0.1f);
        e.a[i] = v;
        do v = roundf((float)(0.5 * dc_rng_normal(&r)) * 4096.0f) / 4096.0f;
        while (fabsf(e.a[i] + v) < 0.1f);
        e.b[i] = v;
    }
    fill_normal(&r, e.r, n, 0, 1);

    /* forward values: exact, these are single float operations */
    int ok_relu = 1, ok_add = 1, ok_addrelu = 1;
    dc_relu_forward(n, e.a, y);
    for (long i = 0; i < n; i++) ok_relu &= y[i] == (e.a[i] > 0 ? e.a[i] : 0.0f);
    dc_add_forward(n, e.a, e.b, y);
    for (long i = 0; i < n; i++) ok_add &= y[i] == e.a[i] + e.b[i];
    dc_add_relu_forward(n, e.a, e.b, y);
    for (long i = 0; i < n; i++) ok_addrelu &= y[i] == (e.a[i] + e.b[i] > 0 ? e.a[i] + e.b[i] : 0.0f);
    EXPECT(ok_relu && ok_add && ok_addrelu);

    /* Piecewise linear away from the kinks and, with the exact inputs above, free of float rounding: the
     * difference quotient is exact but for the double sums in L (~1e-16 relative, divided by 2*eps: ~1e-12)
     * and its storage as float (<= 6e-8). 1e-6 still demands exactness; a masking error is O(1). */
    e.which = 0;
    dc_relu_forward(n, e.a, y);
    fill_value(dx, n, NAN);
    dc_relu_backward(n, y, e.r, dx);
    EXPECT(fd_check("relu dx", elt_loss, &e, e.a, n, 1.0f / 1024, dx) < 1e-6);
    e.which = 2;
    dc_add_relu_forward(n, e.a, e.b, y);
    fill_value(dx, n, NAN);
    dc_relu_backward(n, y, e.r, dx); /* the backward of add_relu: one mask shared by both inputs */
    EXPECT(fd_check("add_relu da", elt_loss, &e, e.a, n, 1.0f / 1024, dx) < 1e-6);
    EXPECT(fd_check("add_relu db", elt_loss, &e, e.b, n, 1.0f / 1024, dx) < 1e-6);
    e.which = 1; /* add: the gradient is dy itself for both inputs */
    EXPECT(fd_check("add da", elt_loss, &e, e.a, n, 1.0f / 1024, e.r) < 1e-6);
    EXPECT(fd_check("add db", elt_loss, &e, e.b, n, 1.0f / 1024, e.r) < 1e-6);

    /* in place (y aliases an input, dx aliases dy), large enough for the threaded path */
    const long big = 1 << 18;
    float *u = falloc(big), *v = falloc(big), *w = falloc(big), *g = falloc(big);
    fill_normal(&r, u, big, 0, 1), fill_normal(&r, v, big, 0, 1), fill_normal(&r, g, big, 0, 1);
    dc_add_relu_forward(big, u, v, w);
    float *g2 = falloc(big);
    memcpy(g2, g, (size_t)big * sizeof(float));
    dc_relu_backward(big, w, g2, g2);
    int ok = 1;
    for (long i = 0; i < big; i++) ok &= g2[i] == (w[i] > 0 ? g[i] : 0.0f);
    dc_add_relu_forward(big, u, v, u); /* u <- relu(u + v) */
    EXPECT(ok && all_equal_bits(u, w, big));

    /* NaN is propagated by the forward (as torch.relu), so a diverged run stays visible */
    float nan_in[2] = {NAN, -1.0f}, nan_out[2];
    dc_relu_forward(2, nan_in, nan_out);
    EXPECT(isnan(nan_out[0]) && nan_out[1] == 0.0f);

    free(u), free(v), free(w), free(g), free(g2);
    free(e.a), free(e.b), free(e.y), free(e.r), free(y), free(dx);
}

/* =======================================================================================================
 * Max pool and average pool
 * ======================================================================================================= */

/* Naive reference: copy the plane into a (H+2P) x (W+2P) buffer filled with -inf, scan every window in
 * row-major order keeping the first maximum, and map the winner back to the unpadded index. */
static void maxpool_naive(int C, int N, int H, int W, int K, int S, int P, const float *x, float *y,
                          int32_t *argmax) {
    int HP = H + 2 * P, WP = W + 2 * P, OH = (HP - K) / S + 1, OW = (WP - K) / S + 1;
    float *pad = falloc((long)HP * WP);
    for (int pl = 0; pl < C * N; pl++) {
        fill_value(pad, (long)HP * WP, -INFINITY);
        for (int h = 0; h < H; h++)
            for (int w = 0; w < W; w++) pad[(h + P) * WP + w + P] = x[(long)pl * H * W + h * W + w];
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                int bh = -1, bw = -1;
                float best = 0;
                for (int i = 0; i < K; i++)
                    for (int j = 0; j < K; j++) {
                        int hh = oh * S + i, ww = ow * S + j;
                        float v = pad[hh * WP + ww];
                        int inside = hh >= P && hh < H + P && ww >= P && ww < W + P;
                        if (inside && (bh < 0 || v > best)) best = v, bh = hh - P, bw = ww - P;
                    }
                y[(long)pl * OH * OW + oh * OW + ow] = best;
                argmax[(long)pl * OH * OW + oh * OW + ow] = bh * W + bw;
            }
    }
    free(pad);
}

typedef struct {
    int C, N, H, W, K, S, P;
    float *x, *y, *r;
    int32_t *argmax;
    long ny;
} pool_ctx;

static double maxpool_loss(void *vctx) {
    pool_ctx *p = vctx;
    dc_maxpool_forward(p->C, p->N, p->H, p->W, p->K, p->S, p->P, p->x, p->y, p->argmax);
    return dot_d(p->y, p->r, p->ny);
}

static void test_maxpool_config(int C, int N, int H, int W, int K, int S, int P, uint64_t seed) {
    printf("maxpool C=%d N=%d %dx%d K=%d S=%d P=%d\n", C, N, H, W, K, S, P);
    int OH = (H + 2 * P - K) / S + 1, OW = (W + 2 * P - K) / S + 1;
    long nx = (long)C * N * H * W, ny = (long)C * N * OH * OW;
    pool_ctx p = {C, N, H, W, K, S, P, falloc(nx), falloc(ny), falloc(ny), malloc(ny * sizeof(int32_t)), ny};
    float *y = falloc(ny), *dx = falloc(nx);
    int32_t *am = malloc(ny * sizeof(int32_t)), *am_ref = malloc(ny * sizeof(int32_t));
    float *y_ref = falloc(ny);
    dc_rng r = test_rng(seed);

    /* distinct values k/64 - 0.5*nx/64 (a random permutation): no ties, gaps of 1/64 >> 2*eps, and x +- eps
     * exact in float, so the argmax never changes under the perturbation */
    int64_t *perm = malloc(nx * sizeof(int64_t));
    for (long i = 0; i < nx; i++) perm[i] = i;
    dc_rng_shuffle_i64(&r, perm, nx);
    for (long i = 0; i < nx; i++) p.x[i] = (float)(perm[i] - nx / 2) / 64.0f;
    fill_normal(&r, p.r, ny, 0, 1);

    dc_maxpool_forward(C, N, H, W, K, S, P, p.x, y, am);
    maxpool_naive(C, N, H, W, K, S, P, p.x, y_ref, am_ref);
    EXPECT(all_equal_bits(y, y_ref, ny) && memcmp(am, am_ref, ny * sizeof(int32_t)) == 0);

    /* Piecewise linear with the winners fixed: the difference quotient is exact (x +- eps exact, y a copy of
     * x) but for the double sums in L (~1e-12 after dividing by 2*eps) and its storage as float (6e-8).
     * 1e-6 still allows nothing but exactness. */
    fill_value(dx, nx, NAN);
    dc_maxpool_backward(C, N, H, W, K, S, P, p.r, am, dx);
    EXPECT(fd_check("maxpool dx", maxpool_loss, &p, p.x, nx, 1.0f / 1024, dx) < 1e-6);

    /* padding is -inf: on an all-negative input no output may be 0 (zero padding would give 0 at borders) */
    for (long i = 0; i < nx; i++) p.x[i] = -1.0f - (float)perm[i] / 64.0f;
    dc_maxpool_forward(C, N, H, W, K, S, P, p.x, y, am);
    maxpool_naive(C, N, H, W, K, S, P, p.x, y_ref, am_ref);
    int negative = 1;
    for (long i = 0; i < ny; i++) negative &= y[i] <= -1.0f;
    EXPECT(negative && all_equal_bits(y, y_ref, ny) && memcmp(am, am_ref, ny * sizeof(int32_t)) == 0);

    /* ties: a constant input; the winner is the first valid element of every window (row-major) */
    fill_value(p.x, nx, 2.0f);
    dc_maxpool_forward(C, N, H, W, K, S, P, p.x, y, am);
    int first = 1;
    for (int oh = 0; oh < OH; oh++)
        for (int ow = 0; ow < OW; ow++) {
            int h0 = oh * S - P < 0 ? 0 : oh * S - P, w0 = ow * S - P < 0 ? 0 : ow * S - P;
            for (int pl = 0; pl < C * N; pl++) first &= am[(long)pl * OH * OW + oh * OW + ow] == h0 * W + w0;
        }
    EXPECT(first);
    /* ...and with overlapping windows the tied winners collect the sum of their windows' gradients */
    fill_value(dx, nx, NAN);
    dc_maxpool_backward(C, N, H, W, K, S, P, p.r, am, dx);
    double s_dx = 0, s_dy = 0;
    for (long i = 0; i < nx; i++) s_dx += dx[i];
    for (long i = 0; i < ny; i++) s_dy += p.r[i];
    EXPECT(fabs(s_dx - s_dy) < 1e-4 * (1 + fabs(s_dy)));

    free(p.x), free(p.y), free(p.r), free(p.argmax), free(y), free(dx), free(am), free(am_ref), free(y_ref);
    free(perm);
}

static void test_maxpool_specials(void) {
    printf("maxpool ties inside a window and NaN\n");
    /* one 4x4 plane, K=2 S=2: window (0,0) holds 5 at (0,1) and (1,0): the first in row-major order, (0,1),
     * wins; window (0,1) holds a NaN, which wins and propagates. */
    float x[16] = {1, 5, 0, NAN, 5, 2, 3, 4, 0, 0, 0, 0, 7, 7, 7, 7};
    float y[4];
    int32_t am[4];
    dc_maxpool_forward(1, 1, 4, 4, 2, 2, 0, x, y, am);
    EXPECT(y[0] == 5.0f && am[0] == 1);
    EXPECT(isnan(y[1]) && am[1] == 3);
    EXPECT(y[2] == 7.0f && am[2] == 12 && y[3] == 7.0f && am[3] == 14);

    /* an all -inf plane: the output is -inf and the argmax still a valid index, the window's first element
     * (PyTorch's initial maxindex), so backward routes the gradient inside the plane */
    float ninf[9], yn[4], dyn[4] = {1, 2, 3, 4}, dxn[9];
    int32_t amn[4];
    fill_value(ninf, 9, -INFINITY);
    dc_maxpool_forward(1, 1, 3, 3, 3, 2, 1, ninf, yn, amn);
    EXPECT(yn[0] == -INFINITY && amn[0] == 0 && amn[1] == 1 && amn[2] == 3 && amn[3] == 4);
    dc_maxpool_backward(1, 1, 3, 3, 3, 2, 1, dyn, amn, dxn);
    EXPECT(dxn[0] == 1 && dxn[1] == 2 && dxn[3] == 3 && dxn[4] == 4 && dxn[8] == 0);
}

typedef struct {
    int C, N;
    int64_t P;
    float *x, *y, *r;
} avg_ctx;

static double avgpool_loss(void *vctx) {
    avg_ctx *a = vctx;
    dc_avgpool_forward(a->C, a->N, a->P, a->x, a->y);
    return dot_d(a->y, a->r, (long)a->C * a->N);
}

static void test_avgpool(void) {
    printf("avgpool\n");
    const int C = 3, N = 4;
    const int64_t P = 7;
    long nx = C * N * P, ny = C * N;
    dc_rng r = test_rng(300);
    avg_ctx a = {C, N, P, falloc(nx), falloc(ny), falloc(ny)};
    float *y = falloc(ny), *dx = falloc(nx);
    fill_normal(&r, a.x, nx, 0.5, 1), fill_normal(&r, a.r, ny, 0, 1);
    dc_avgpool_forward(C, N, P, a.x, y);
    double worst = 0;
    for (int n = 0; n < N; n++)
        for (int c = 0; c < C; c++) {
            double s = 0;
            for (int64_t p = 0; p < P; p++) s += a.x[((long)c * N + n) * P + p];
            worst = fmax(worst, fabs(y[n * C + c] - s / P) / (fabs(s / P) + 1e-3));
        }
    EXPECTF(worst < 1e-6, "avgpool forward err %.2e (a CNHW/NC index mix-up gives O(1))", worst);
    fill_value(dx, nx, NAN);
    dc_avgpool_backward(C, N, P, a.r, dx);
    /* linear layer: the only error is the float rounding of the means (~6e-8 relative each), amplified by
     * 1/eps = 100 in the difference quotient: ~1e-5; 1e-4 tolerance */
    EXPECT(fd_check("avgpool dx", avgpool_loss, &a, a.x, nx, 1e-2f, dx) < 1e-4);
    free(a.x), free(a.y), free(a.r), free(y), free(dx);
}

/* =======================================================================================================
 * Linear
 * ======================================================================================================= */

typedef struct {
    int N, D, K;
    float *x, *W, *b, *y, *r;
} lin_ctx;

static double linear_loss(void *vctx) {
    lin_ctx *l = vctx;
    dc_linear_forward(l->N, l->D, l->K, l->x, l->W, l->b, l->y);
    return dot_d(l->y, l->r, (long)l->N * l->K);
}

static void test_linear(void) {
    printf("linear\n");
    const int N = 5, D = 13, K = 7;
    dc_rng r = test_rng(400);
    lin_ctx l = {N, D, K, falloc(N * D), falloc(K * D), falloc(K), falloc(N * K), falloc(N * K)};
    fill_normal(&r, l.x, N * D, 0, 1), fill_normal(&r, l.W, K * D, 0, 0.3), fill_normal(&r, l.b, K, 0, 1);
    fill_normal(&r, l.r, N * K, 0, 1);
    float *y = falloc(N * K), *y_ref = falloc(N * K), *dx = falloc(N * D), *dW = falloc(K * D),
          *db = falloc(K);

    dc_linear_forward(N, D, K, l.x, l.W, l.b, y);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) {
            double s = l.b[k];
            for (int d = 0; d < D; d++) s += (double)l.x[n * D + d] * l.W[k * D + d];
            y_ref[n * K + k] = (float)s;
        }
    /* float GEMM of length 13: a few ulps of the largest partial sums (|x W| <~ 3) */
    EXPECT(tu_tensor_rel_err(y, y_ref, N * K, 1e-30) < 1e-5);

    fill_value(dx, N * D, NAN), fill_value(dW, K * D, 1.0f), fill_value(db, K, -2.0f);
    dc_linear_backward(N, D, K, l.x, l.W, l.r, dx, dW, db);
    for (int i = 0; i < K * D; i++) dW[i] -= 1.0f;
    for (int k = 0; k < K; k++) db[k] += 2.0f;
    /* L is exactly linear in each argument, so only rounding is left: float outputs of magnitude ~3 with
     * ulp ~2.4e-7, summed over N*K = 35 terms, divided by 2*eps = 2e-2: ~1e-5 of the gradient scale (~1).
     * (The accumulate check subtracts 1 from values ~1, which costs another ulp.) 1e-3 tolerance. */
    EXPECT(fd_check("linear dx", linear_loss, &l, l.x, N * D, 1e-2f, dx) < 1e-3);
    EXPECT(fd_check("linear dW", linear_loss, &l, l.W, K * D, 1e-2f, dW) < 1e-3);
    EXPECT(fd_check("linear db", linear_loss, &l, l.b, K, 1e-2f, db) < 1e-3);

    /* no bias; dx == NULL and db == NULL allowed */
    dc_linear_forward(N, D, K, l.x, l.W, NULL, y);
    double worst = 0;
    for (int i = 0; i < N * K; i++) {
        int k = i % K;
        worst = fmax(worst, fabs((y[i] + l.b[k]) - y_ref[i]));
    }
    EXPECT(worst < 1e-5);
    float *dW2 = falloc(K * D);
    fill_value(dW2, K * D, 0);
    dc_linear_backward(N, D, K, l.x, l.W, l.r, NULL, dW2, NULL);
    EXPECT(tu_tensor_rel_err(dW2, dW, K * D, 1e-30) < 1e-6);

    free(l.x), free(l.W), free(l.b), free(l.y), free(l.r), free(y), free(y_ref), free(dx), free(dW), free(db);
    free(dW2);
}

/* =======================================================================================================
 * Softmax cross-entropy
 * ======================================================================================================= */

typedef struct {
    int N, K;
    float *z, *offset;
    int32_t *labels;
    float grad_scale;
} ce_ctx;

static double ce_loss(void *vctx) {
    ce_ctx *c = vctx;
    return c->grad_scale * dc_softmax_ce(c->N, c->K, c->z, c->labels, c->offset, c->grad_scale, NULL);
}

/* -log softmax(z + offset)_y in double, computed directly (log of the sum of exp, no max shift: the test
 * logits are small). */
static double ce_ref(int N, int K, const float *z, const int32_t *labels, const float *offset) {
    double total = 0;
    for (int n = 0; n < N; n++) {
        double s = 0;
        for (int k = 0; k < K; k++) s += exp((double)(offset ? z[n * K + k] + offset[k] : z[n * K + k]));
        int y = labels[n];
        total += log(s) - (double)(offset ? z[n * K + y] + offset[y] : z[n * K + y]);
    }
    return total;
}

static void test_softmax_ce(void) {
    printf("softmax cross-entropy\n");
    const int N = 6, K = 9;
    dc_rng r = test_rng(500);
    ce_ctx c = {N, K, falloc(N * K), falloc(K), malloc(N * sizeof(int32_t)), 1.0f / 6};
    float *dz = falloc(N * K);
    /* logits and offsets are multiples of 2^-12 below 2^3: z + offset and z +- eps (eps = 2^-10) are then
     * exact in float, so the finite differences see exactly the step they divide by */
    fill_normal(&r, c.z, N * K, 0, 2);
    for (int i = 0; i < N * K; i++) c.z[i] = roundf(fminf(fmaxf(c.z[i], -7.0f), 7.0f) * 4096.0f) / 4096.0f;
    for (int k = 0; k < K; k++) /* log-prior of class counts 1..9 */
        c.offset[k] = roundf((float)log((k + 1.0) / 45.0) * 4096.0f) / 4096.0f;
    for (int n = 0; n < N; n++) c.labels[n] = (int32_t)dc_rng_below(&r, K);

    for (int with_offset = 0; with_offset <= 1; with_offset++) {
        float *off = with_offset ? c.offset : NULL;
        ce_ctx cc = c;
        cc.offset = off;
        fill_value(dz, N * K, NAN);
        double loss = dc_softmax_ce(N, K, c.z, c.labels, off, c.grad_scale, dz);
        double want = ce_ref(N, K, c.z, c.labels, off);
        /* both are double computations on the same float inputs: only the max shift and the summation order
         * differ, ~1e-15 relative */
        EXPECTF(fabs(loss - want) < 1e-12 * fabs(want), "offset=%d loss %.17g want %.17g", with_offset, loss,
                want);
        /* the loss is computed in double from exact float inputs, so the difference quotient has only the
         * truncation error eps^2/6 * |f'''| (|f'''| <= ~0.1 per logit) ~2e-8 and the rounding of the float
         * dlogits, 6e-8: 1e-6 tolerance */
        EXPECT(fd_check(with_offset ? "ce dlogits (offset)" : "ce dlogits", ce_loss, &cc, c.z, N * K,
                        1.0f / 1024, dz) < 1e-6);
        /* each row of the gradient sums to zero (softmax minus one-hot) */
        double worst = 0;
        for (int n = 0; n < N; n++) {
            double s = 0;
            for (int k = 0; k < K; k++) s += dz[n * K + k];
            worst = fmax(worst, fabs(s));
        }
        EXPECT(worst < 1e-7);
    }

    /* offset == shifting the logits by hand (the same float additions) */
    float *shifted = falloc(N * K), *d1 = falloc(N * K), *d2 = falloc(N * K);
    for (int n = 0; n < N; n++)
        for (int k = 0; k < K; k++) shifted[n * K + k] = c.z[n * K + k] + c.offset[k];
    double l1 = dc_softmax_ce(N, K, c.z, c.labels, c.offset, 0.5f, d1);
    double l2 = dc_softmax_ce(N, K, shifted, c.labels, NULL, 0.5f, d2);
    EXPECT(l1 == l2 && all_equal_bits(d1, d2, N * K));

    /* huge logits: exp() would overflow without the max subtraction. Logits are multiples of 1/256 below 2^8,
     * so adding 2^12 is exact in float and the loss must not change (to double rounding of the log-sum-exp
     * around a different max: ~1e-12 absolute). */
    for (int i = 0; i < N * K; i++) shifted[i] = roundf(c.z[i] * 256.0f) / 256.0f;
    double base = dc_softmax_ce(N, K, shifted, c.labels, NULL, 1.0f, d1);
    for (int i = 0; i < N * K; i++) shifted[i] += 4096.0f;
    double big = dc_softmax_ce(N, K, shifted, c.labels, NULL, 1.0f, d2);
    EXPECTF(isfinite(big) && fabs(big - base) < 1e-9, "shift 4096: %.17g vs %.17g", big, base);
    EXPECT(tu_tensor_rel_err(d2, d1, N * K, 1e-30) < 1e-6);

    /* a spread of 2000 between logits: exp(2000) overflows even in double unless the max is subtracted.
     * loss = lse - z_y with lse = 1000 + log(1 + e^-1000 + e^-2000) = 1000 exactly in double. */
    float spread[3] = {-1000.0f, 1000.0f, 0.0f}, dspread[3];
    int32_t lab0[1] = {0};
    double l_spread = dc_softmax_ce(1, 3, spread, lab0, NULL, 1.0f, dspread);
    EXPECTF(l_spread == 2000.0, "spread loss %.17g", l_spread);
    EXPECT(dspread[0] == -1.0f && dspread[1] == 1.0f && dspread[2] == 0.0f);

    /* a label outside [0, K) gives NaN, never a silent number or an out-of-bounds read */
    int32_t bad[1] = {K};
    EXPECT(isnan(dc_softmax_ce(1, K, c.z, bad, NULL, 1.0f, NULL)));

    /* thread-count determinism of the returned sum (fixed row chunks) */
    const int BN = 512, BK = 300;
    float *bz = falloc(BN * BK);
    int32_t *bl = malloc(BN * sizeof(int32_t));
    fill_normal(&r, bz, BN * BK, 0, 3);
    for (int n = 0; n < BN; n++) bl[n] = (int32_t)dc_rng_below(&r, BK);
    int saved = omp_get_max_threads();
    omp_set_num_threads(1);
    double s1 = dc_softmax_ce(BN, BK, bz, bl, NULL, 1.0f, NULL);
    omp_set_num_threads(2);
    double s2 = dc_softmax_ce(BN, BK, bz, bl, NULL, 1.0f, NULL);
    omp_set_num_threads(saved);
    EXPECT(s1 == s2);
    EXPECT(fabs(s1 - ce_ref(BN, BK, bz, bl, NULL)) < 1e-11 * s1);

    free(c.z), free(c.offset), free(c.labels), free(dz), free(shifted), free(d1), free(d2), free(bz),
        free(bl);
}

/* =======================================================================================================
 * PyTorch golden values
 * ======================================================================================================= */

typedef struct {
    char name[64];
    uint32_t dtype;
    uint64_t count;
    void *data;
} golden_rec;

typedef struct {
    golden_rec *recs;
    int n;
} golden;

static int golden_load(const char *path, golden *g) {
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    char magic[4];
    uint32_t version, n;
    int ok = fread(magic, 1, 4, f) == 4 && memcmp(magic, "DCLG", 4) == 0 && fread(&version, 4, 1, f) == 1 &&
             version == 1 && fread(&n, 4, 1, f) == 1 && n < 10000;
    g->recs = ok ? calloc(n, sizeof(golden_rec)) : NULL;
    g->n = 0;
    for (uint32_t i = 0; ok && i < n; i++) {
        golden_rec *r = &g->recs[i];
        uint32_t len;
        ok = fread(&len, 4, 1, f) == 1 && len < sizeof r->name && fread(r->name, 1, len, f) == len &&
             fread(&r->dtype, 4, 1, f) == 1 && fread(&r->count, 8, 1, f) == 1 && r->count < (1u << 24);
        if (!ok) break;
        r->data = malloc(r->count * 4 + 4);
        ok = fread(r->data, 4, r->count, f) == r->count;
        g->n++;
    }
    fclose(f);
    REQUIRE(ok); /* a present but corrupt fixture is an error, not a skip */
    return 1;
}

static void *golden_get(const golden *g, const char *name, uint64_t count) {
    for (int i = 0; i < g->n; i++)
        if (strcmp(g->recs[i].name, name) == 0) {
            EXPECTF(g->recs[i].count == count, "%s: %llu values, expected %llu", name,
                    (unsigned long long)g->recs[i].count, (unsigned long long)count);
            REQUIRE(g->recs[i].count >= count);
            return g->recs[i].data;
        }
    fprintf(stderr, "fixture record %s missing\n", name);
    REQUIRE(0);
    return NULL;
}

static void golden_bn(const golden *g) {
    const int C = 3;
    const int64_t M = 36;
    const long n = C * M;
    const float *x = golden_get(g, "bn.x", n), *gamma = golden_get(g, "bn.gamma", C);
    const float *beta = golden_get(g, "bn.beta", C), *dy = golden_get(g, "bn.dy", n);
    const float *rm0 = golden_get(g, "bn.running_mean0", C), *rv0 = golden_get(g, "bn.running_var0", C);
    float y[108], dx[108], mean[3], rstd[3], rm[3], rv[3], dgamma[3], dbeta[3], ye[108];
    double scratch[6];
    for (int relu = 0; relu <= 1; relu++) {
        char key[64];
        memcpy(rm, rm0, sizeof rm), memcpy(rv, rv0, sizeof rv);
        memset(dgamma, 0, sizeof dgamma), memset(dbeta, 0, sizeof dbeta);
        dc_bn_forward_train(C, M, x, gamma, beta, y, mean, rstd, rm, rv, 0.1f, 1e-5f, relu, NULL, scratch);
        dc_bn_backward(C, M, x, y, dy, gamma, mean, rstd, relu, dx, dgamma, dbeta, NULL, scratch);
        dc_bn_forward_eval(C, M, x, gamma, beta, rm, rv, 1e-5f, relu, ye);
#define GOLD(field, ours, count, tol)                                                                        \
    do {                                                                                                     \
        snprintf(key, sizeof key, "bn.relu%d.%s", relu, field);                                              \
        double e_ = tu_tensor_rel_err(ours, golden_get(g, key, count), count, 1e-30);                        \
        EXPECTF(e_ < (tol), "%s: rel err %.2e", key, e_);                                                    \
        printf("  golden %-22s rel err %.2e\n", key, e_);                                                    \
    } while (0)
        /* Same float32 inputs; both sides compute the statistics in higher precision and the outputs in
         * float, in different orders and groupings: agreement to a few ulps of the tensor's scale (measured
         * <= 1.4e-7, i.e. ~1 ulp). 1e-6 (~8 ulps) leaves room for other compilers' FMA contraction and is
         * 1e4 below what any formula difference (biased vs unbiased variance: 1/M = 3%) would produce. */
        GOLD("y", y, n, 1e-6);
        GOLD("running_mean", rm, C, 1e-6);
        GOLD("running_var", rv, C, 1e-6);
        GOLD("y_eval", ye, n, 1e-6);
        GOLD("dx", dx, n, 1e-6);
        GOLD("dgamma", dgamma, C, 1e-6);
        GOLD("dbeta", dbeta, C, 1e-6);
#undef GOLD
        if (relu == 0) {
            EXPECT(tu_max_rel_err(mean, golden_get(g, "bn.save_mean", C), C, 1e-6) < 1e-6);
            EXPECT(tu_max_rel_err(rstd, golden_get(g, "bn.save_rstd", C), C, 1e-6) < 1e-6);
        }
    }
}

static void golden_pool(const golden *g, const char *tag) {
    char key[64];
    snprintf(key, sizeof key, "pool.%s.shape", tag);
    const int32_t *s = golden_get(g, key, 7);
    int C = s[0], N = s[1], H = s[2], W = s[3], K = s[4], S = s[5], P = s[6];
    int OH = (H + 2 * P - K) / S + 1, OW = (W + 2 * P - K) / S + 1;
    long nx = (long)C * N * H * W, ny = (long)C * N * OH * OW;
    float *y = falloc(ny), *dx = falloc(nx);
    int32_t *am = malloc(ny * sizeof(int32_t));
    snprintf(key, sizeof key, "pool.%s.x", tag);
    const float *x = golden_get(g, key, nx);
    dc_maxpool_forward(C, N, H, W, K, S, P, x, y, am);
    snprintf(key, sizeof key, "pool.%s.dy", tag);
    fill_value(dx, nx, NAN);
    dc_maxpool_backward(C, N, H, W, K, S, P, golden_get(g, key, ny), am, dx);
    /* integer-valued inputs with many ties and an all-negative plane: values and indices must match exactly
     * (this is the tie-break and padding rule), and dx exactly too (the same scatter-add order as PyTorch's
     * CPU kernel: outputs in row-major order). */
    snprintf(key, sizeof key, "pool.%s.y", tag);
    EXPECTF(all_equal_bits(y, golden_get(g, key, ny), ny), "%s differs", key);
    snprintf(key, sizeof key, "pool.%s.argmax", tag);
    EXPECTF(memcmp(am, golden_get(g, key, ny), ny * sizeof(int32_t)) == 0, "%s differs", key);
    snprintf(key, sizeof key, "pool.%s.dx", tag);
    double e = tu_tensor_rel_err(dx, golden_get(g, key, nx), nx, 1e-30);
    EXPECTF(e < 1e-6, "%s: rel err %.2e", key, e);
    printf("  golden pool.%s (K=%d S=%d P=%d): y/argmax exact, dx rel err %.2e\n", tag, K, S, P, e);
    free(y), free(dx), free(am);
}

static void golden_ce(const golden *g) {
    const int N = 6, K = 5;
    const float *z = golden_get(g, "ce.logits", N * K), *offset = golden_get(g, "ce.offset", K);
    const int32_t *labels = golden_get(g, "ce.labels", N);
    const float grad_scale = *(const float *)golden_get(g, "ce.grad_scale", 1);
    float dz[30];
    for (int with_offset = 0; with_offset <= 1; with_offset++) {
        const char *tag = with_offset ? "offset" : "plain";
        char key[64];
        double loss = dc_softmax_ce(N, K, z, labels, with_offset ? offset : NULL, grad_scale, dz);
        snprintf(key, sizeof key, "ce.%s.loss", tag);
        double want = *(const float *)golden_get(g, key, 1);
        snprintf(key, sizeof key, "ce.%s.loss_lo", tag);
        want += *(const float *)golden_get(g, key, 1);
        /* PyTorch computed in double from the same float (logits + offset): ~1e-15 relative; the hi + lo
         * float pair carries ~48 bits, so 1e-12 */
        EXPECTF(fabs(loss - want) < 1e-12 * fabs(want), "ce %s loss %.17g torch %.17g", tag, loss, want);
        snprintf(key, sizeof key, "ce.%s.dlogits", tag);
        double e = tu_tensor_rel_err(dz, golden_get(g, key, N * K), N * K, 1e-30);
        /* float rounding of a double gradient on both sides: 1 ulp */
        EXPECTF(e < 1e-6, "%s rel err %.2e", key, e);
        printf("  golden ce.%-7s loss %.10f (torch %.10f), dlogits rel err %.2e\n", tag, loss, want, e);
    }
}

static void test_golden(void) {
    printf("PyTorch golden values\n");
    golden g;
    const char *path = DC_FIXTURES "/layers_golden.bin";
    if (!golden_load(path, &g)) {
        printf("  SKIP: %s not found (generate it with /usr/bin/python3 tests/gen_layer_fixtures.py)\n",
               path);
        return;
    }
    golden_bn(&g);
    golden_pool(&g, "a");
    golden_pool(&g, "b");
    golden_ce(&g);
    for (int i = 0; i < g.n; i++) free(g.recs[i].data);
    free(g.recs);
}

int main(void) {
    test_bn_gradients(0);
    test_bn_gradients(1);
    test_bn_statistics();
    test_bn_determinism();
    test_bn_sync();
    test_eltwise();
    test_maxpool_config(2, 3, 7, 6, 3, 2, 1, 301); /* the ImageNet stem pool shape, odd sizes */
    test_maxpool_config(1, 2, 5, 5, 3, 1, 1, 302); /* overlapping windows: gradients add up */
    test_maxpool_config(2, 1, 6, 8, 2, 2, 0, 303); /* disjoint windows, no padding */
    test_maxpool_specials();
    test_avgpool();
    test_linear();
    test_softmax_ce();
    test_golden();
    return tu_finish("test_layers");
}
