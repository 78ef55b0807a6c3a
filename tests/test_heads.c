/*
 * test_heads.c: the stage-2 heads (heads/head.h) against independent naive implementations and behavioural
 * expectations.
 *
 *  - NCM: centroids and logits of every feat_type (un, l2n, cl2n) and dist (l2, cos) against a direct double
 *    computation of the reference's formulas; the two-pass statistics summed from two shards ("ranks") give
 *    the same head; empty classes, bad labels and zero vectors.
 *  - tau-norm: tau = 0 is the joint classifier without bias; the effective rows have norm ||W_j||^(1 - tau);
 *    logits equal X (W_j / ||W_j||^tau)^T computed naively; keep_bias adds b.
 *  - LWS with s = 1 and logit adjustment with tau = 0 reproduce the joint logits bit for bit.
 *  - the sweep: every row equals the metrics of the head built at that tau; the choice is the max macro, with
 *    the documented tie-break; the default grid is numpy.linspace(0, 2, 21).
 *  - cRT on synthetic long-tailed Gaussian clusters: high macro accuracy, and better tail accuracy than the
 *    same linear fit with instance-balanced batches.
 *  - LWS learns larger scales for tail classes when the joint weights favour the head.
 *  - finite-difference gradient checks of the trainer's own gradient code (cRT and LWS, with a loss offset).
 *  - the distributed path: two simulated ranks (the second driven from the first's reduce callback, which
 *    sums the two gradient vectors) equal the single-process run; runs are deterministic; the feature-source
 *    callback equals the matrix path and propagates its errors.
 *  - serialisation: safetensors and meta + slab round trips; bad inputs name what is wrong.
 *  - steady-state steps, head logits and sweep blocks allocate nothing from decouple's code.
 */
#define _GNU_SOURCE
#include "core/check.h"
#include "core/layers.h"
#include "core/rng.h"
#include "heads/head.h"
#include "heads/metrics.h"
#include "testutil.h"

#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- allocation counting (as tests/test_no_alloc.c: our malloc wins over libc's for the whole process).
 * AddressSanitizer replaces malloc itself: under -fsanitize=address the hooks are left out and the
 * no-allocation check is skipped (DC_SANITIZE builds). */
#include "alloc_hooks.h"

/* ---- helpers ------------------------------------------------------------------------------------------- */

static float *randn_matrix(uint64_t key, int64_t n, double scale, double shift) {
    float *a = dc_malloc((size_t)n * sizeof(float));
    dc_rng r = dc_rng_make(key);
    for (int64_t i = 0; i < n; i++) a[i] = (float)(dc_rng_normal(&r) * scale + shift);
    return a;
}

/* Long-tailed Gaussian clusters: n_j = floor(nmax * imb^(-j/(C-1))), class means sep * (random unit vectors),
 * unit noise. Balanced test set with n_test per class. */
typedef struct {
    int C, D;
    int64_t N, Nt;
    float *X, *Xt, *mu;
    int32_t *y, *yt;
    int64_t *counts;
} lt_data;

static void lt_make(lt_data *d, int C, int D, int nmax, double imb, int n_test, double sep, uint64_t seed) {
    d->C = C;
    d->D = D;
    d->counts = dc_calloc((size_t)C, sizeof(int64_t));
    d->N = 0;
    for (int j = 0; j < C; j++) {
        d->counts[j] = (int64_t)floor(nmax * pow(imb, -(double)j / (C - 1)));
        d->N += d->counts[j];
    }
    d->Nt = (int64_t)n_test * C;
    d->mu = dc_malloc((size_t)C * D * sizeof(float));
    dc_rng r = dc_rng_make(dc_rng_key(seed, 100, 0, 0));
    for (int j = 0; j < C; j++) {
        double ss = 0;
        for (int k = 0; k < D; k++) {
            d->mu[j * D + k] = (float)dc_rng_normal(&r);
            ss += (double)d->mu[j * D + k] * d->mu[j * D + k];
        }
        for (int k = 0; k < D; k++) d->mu[j * D + k] = (float)(d->mu[j * D + k] / sqrt(ss) * sep);
    }
    d->X = dc_malloc((size_t)d->N * D * sizeof(float));
    d->y = dc_malloc((size_t)d->N * sizeof(int32_t));
    d->Xt = dc_malloc((size_t)d->Nt * D * sizeof(float));
    d->yt = dc_malloc((size_t)d->Nt * sizeof(int32_t));
    int64_t i = 0;
    for (int j = 0; j < C; j++)
        for (int64_t k = 0; k < d->counts[j]; k++, i++) {
            d->y[i] = j;
            for (int e = 0; e < D; e++) d->X[i * D + e] = d->mu[j * D + e] + (float)dc_rng_normal(&r);
        }
    /* interleave the training rows so no order effect can help (the samplers do not care anyway) */
    for (int64_t a = d->N - 1; a > 0; a--) {
        int64_t b = (int64_t)dc_rng_below(&r, (uint64_t)a + 1);
        int32_t ty = d->y[a];
        d->y[a] = d->y[b];
        d->y[b] = ty;
        for (int e = 0; e < D; e++) {
            float t = d->X[a * D + e];
            d->X[a * D + e] = d->X[b * D + e];
            d->X[b * D + e] = t;
        }
    }
    for (int64_t k = 0; k < d->Nt; k++) {
        int j = (int)(k % C);
        d->yt[k] = j;
        for (int e = 0; e < D; e++) d->Xt[k * D + e] = d->mu[j * D + e] + (float)dc_rng_normal(&r);
    }
}

static void lt_free(lt_data *d) {
    free(d->X);
    free(d->Xt);
    free(d->mu);
    free(d->y);
    free(d->yt);
    free(d->counts);
}

static void evaluate(const dc_head *h, const float *X, const int32_t *y, int N, const int64_t *counts,
                     dc_metrics_summary *s) {
    float *z = dc_malloc((size_t)N * h->C * sizeof(float));
    dc_head_logits(h, X, N, z);
    dc_metrics m;
    dc_metrics_init(&m, h->C);
    dc_metrics_add(&m, z, y, N);
    dc_metrics_summarize(&m, counts, s);
    dc_metrics_free(&m);
    free(z);
}

static int contains(const char *hay, const char *needle) {
    return strstr(hay, needle) != NULL;
}

/* ---- NCM ----------------------------------------------------------------------------------------------- */

static void naive_transform(const float *x, const double *mu, int D, dc_ncm_feat ft, double *t) {
    double ss = 0;
    for (int d = 0; d < D; d++) {
        t[d] = (double)x[d] - (ft == DC_NCM_CL2N ? mu[d] : 0.0);
        ss += t[d] * t[d];
    }
    if (ft != DC_NCM_UN)
        for (int d = 0; d < D; d++) t[d] = ss > 0 ? t[d] / sqrt(ss) : 0.0;
}

static void test_ncm(void) {
    const int N = 300, D = 9, C = 6, Nq = 40;
    float *X = randn_matrix(11, (int64_t)N * D, 1.0, 0.7); /* shifted: the mean matters for cl2n */
    float *Q = randn_matrix(12, (int64_t)Nq * D, 1.0, 0.7);
    int32_t *y = dc_malloc(N * sizeof(int32_t));
    dc_rng ry = dc_rng_make(13);
    for (int i = 0; i < N; i++)
        y[i] = i < C ? i : (int32_t)dc_rng_below(&ry, C - 1 + (i % 2)); /* uneven classes */
    double *mu = dc_calloc(D, sizeof(double));
    for (int i = 0; i < N; i++)
        for (int d = 0; d < D; d++) mu[d] += X[i * D + d];
    for (int d = 0; d < D; d++) mu[d] /= N;
    double *mu_f = dc_malloc(D * sizeof(double)); /* the head centres with the float mean */
    for (int d = 0; d < D; d++) mu_f[d] = (double)(float)mu[d];
    double *cent = dc_malloc((size_t)C * D * sizeof(double)), *t = dc_malloc(D * sizeof(double));
    float *z = dc_malloc((size_t)Nq * C * sizeof(float)), *zref = dc_malloc((size_t)Nq * C * sizeof(float));
    float *cref = dc_malloc((size_t)C * D * sizeof(float));

    for (int ft = DC_NCM_UN; ft <= DC_NCM_CL2N; ft++) {
        /* naive centroids: means of transformed training features */
        int cnt[16] = {0};
        memset(cent, 0, (size_t)C * D * sizeof(double));
        for (int i = 0; i < N; i++) {
            naive_transform(X + i * D, mu_f, D, (dc_ncm_feat)ft, t);
            for (int d = 0; d < D; d++) cent[y[i] * D + d] += t[d];
            cnt[y[i]]++;
        }
        for (int j = 0; j < C; j++)
            for (int d = 0; d < D; d++) cref[j * D + d] = (float)(cent[j * D + d] / cnt[j]);
        for (int dist = DC_NCM_DIST_L2; dist <= DC_NCM_DIST_COS; dist++) {
            dc_head h;
            int frc = dc_ncm_fit_features(X, y, N, D, C, (dc_ncm_feat)ft, (dc_ncm_dist)dist, &h);
            if (frc != DC_OK) fprintf(stderr, "%s\n", dc_last_error());
            REQUIRE(frc == DC_OK);
            EXPECT(h.kind == DC_HEAD_KIND_NCM);
            double ce = tu_max_rel_err(h.W, cref, (long)C * D, 1e-6);
            EXPECTF(ce < 1e-6, "ncm %s centroids rel err %.3g", dc_ncm_feat_name(ft), ce);
            if (ft == DC_NCM_CL2N) {
                float muf[16];
                for (int d = 0; d < D; d++) muf[d] = (float)mu[d];
                EXPECT(tu_max_rel_err(h.mean, muf, D, 1e-7) < 1e-6);
            }
            /* naive logits: l2 -> -(||t||^2 + ||c||^2 - 2 t.c), cos -> t.c / D, with the centroids as floats
             */
            for (int n = 0; n < Nq; n++) {
                naive_transform(Q + n * D, mu_f, D, (dc_ncm_feat)ft, t);
                for (int j = 0; j < C; j++) {
                    double tt = 0, cc = 0, tc = 0;
                    for (int d = 0; d < D; d++) {
                        tt += t[d] * t[d];
                        cc += (double)cref[j * D + d] * cref[j * D + d];
                        tc += t[d] * cref[j * D + d];
                    }
                    zref[n * C + j] = (float)(dist == DC_NCM_DIST_L2 ? -(tt + cc - 2 * tc) : tc / D);
                }
            }
            dc_head_logits(&h, Q, Nq, z);
            double le = tu_tensor_rel_err(z, zref, (long)Nq * C, 1e-6);
            EXPECTF(le < 2e-6, "ncm %s/%s logits rel err %.3g", dc_ncm_feat_name(ft), dc_ncm_dist_name(dist),
                    le);
            /* argmin distance = argmax logit, as a sanity check of the sign */
            dc_head_free(&h);
        }
        /* two "ranks": shards [0, 137) and [137, N); sum both passes' buffers, then fit */
        dc_ncm_stats s0, s1;
        REQUIRE(dc_ncm_stats_init(&s0, D, C) == DC_OK && dc_ncm_stats_init(&s1, D, C) == DC_OK);
        float mean[16];
        dc_ncm_accumulate_mean(&s0, X, 137);
        dc_ncm_accumulate_mean(&s1, X + 137 * D, N - 137);
        for (int d = 0; d <= D; d++) s0.mean_buf[d] += s1.mean_buf[d];
        REQUIRE(dc_ncm_mean(&s0, mean) == DC_OK);
        REQUIRE(dc_ncm_accumulate(&s0, X, y, 137, (dc_ncm_feat)ft, mean) == DC_OK);
        REQUIRE(dc_ncm_accumulate(&s1, X + 137 * D, y + 137, N - 137, (dc_ncm_feat)ft, mean) == DC_OK);
        for (size_t i = 0; i < (size_t)C * D + C; i++) s0.buf[i] += s1.buf[i];
        dc_head hd;
        REQUIRE(dc_ncm_fit(&s0, (dc_ncm_feat)ft, DC_NCM_DIST_L2, mean, &hd) == DC_OK);
        EXPECTF(tu_max_rel_err(hd.W, cref, (long)C * D, 1e-6) < 1e-6, "sharded ncm %s", dc_ncm_feat_name(ft));
        dc_head_free(&hd);
        dc_ncm_stats_free(&s0);
        dc_ncm_stats_free(&s1);
    }

    /* a zero query and a query equal to the mean give finite logits (the reference would give NaN) */
    {
        dc_head h;
        REQUIRE(dc_ncm_fit_features(X, y, N, D, C, DC_NCM_CL2N, DC_NCM_DIST_L2, &h) == DC_OK);
        float q[2 * 16] = {0};
        memcpy(q + D, h.mean, D * sizeof(float));
        dc_head_logits(&h, q, 2, z);
        int finite = 1;
        for (int i = 0; i < 2 * C; i++) finite &= isfinite(z[i]) != 0;
        EXPECT(finite);
        dc_head_free(&h);
    }
    /* errors: an empty class, a label out of range, cl2n without a mean */
    {
        int32_t *y2 = dc_malloc(N * sizeof(int32_t));
        for (int i = 0; i < N; i++) y2[i] = y[i] == 3 ? 2 : y[i];
        dc_head h;
        EXPECT(dc_ncm_fit_features(X, y2, N, D, C, DC_NCM_L2N, DC_NCM_DIST_L2, &h) == DC_FAIL);
        EXPECTF(contains(dc_last_error(), "class 3"), "message: %s", dc_last_error());
        y2[17] = C;
        EXPECT(dc_ncm_fit_features(X, y2, N, D, C, DC_NCM_L2N, DC_NCM_DIST_L2, &h) == DC_FAIL);
        EXPECTF(contains(dc_last_error(), "row 17"), "message: %s", dc_last_error());
        dc_ncm_stats s;
        REQUIRE(dc_ncm_stats_init(&s, D, C) == DC_OK);
        EXPECT(dc_ncm_accumulate(&s, X, y, N, DC_NCM_CL2N, NULL) == DC_FAIL);
        EXPECTF(contains(dc_last_error(), "mean"), "message: %s", dc_last_error());
        dc_ncm_feat f;
        EXPECT(dc_ncm_feat_parse("cl2n", &f) == DC_OK && f == DC_NCM_CL2N);
        EXPECT(dc_ncm_feat_parse("l2", &f) == DC_FAIL && contains(dc_last_error(), "\"l2\""));
        dc_ncm_stats_free(&s);
        free(y2);
    }
    free(X);
    free(Q);
    free(y);
    free(mu);
    free(mu_f);
    free(cent);
    free(t);
    free(z);
    free(zref);
    free(cref);
}

/* ---- tau-norm, LWS, logit adjustment ------------------------------------------------------------------- */

static void test_linear_family(void) {
    const int D = 12, C = 7, N = 50;
    float *W = randn_matrix(21, (int64_t)C * D, 1.0, 0.0);
    for (int j = 0; j < C; j++) /* norms spread over 0.2 .. 3 */
        for (int d = 0; d < D; d++) W[j * D + d] *= (float)(0.2 + 0.4 * j);
    float *b = randn_matrix(22, C, 0.5, 0.0);
    float *X = randn_matrix(23, (int64_t)N * D, 1.0, 0.0);
    int64_t counts[7] = {500, 200, 120, 60, 25, 10, 3};
    dc_head joint;
    REQUIRE(dc_head_init_linear(&joint, D, C, W, b) == DC_OK);
    float *zj = dc_malloc((size_t)N * C * 4), *z = dc_malloc((size_t)N * C * 4),
          *zr = dc_malloc((size_t)N * C * 4);
    dc_linear_forward(N, D, C, X, W, b, zj);
    dc_head_logits(&joint, X, N, z);
    EXPECT(memcmp(z, zj, (size_t)N * C * 4) == 0);

    /* LWS with s = 1 is the joint classifier, bit for bit */
    dc_head lws;
    REQUIRE(dc_head_init_lws(&lws, &joint) == DC_OK);
    dc_head_logits(&lws, X, N, z);
    EXPECT(memcmp(z, zj, (size_t)N * C * 4) == 0);
    /* and with other scales: s_j (W_j x + b_j) */
    for (int j = 0; j < C; j++) lws.scales[j] = 0.5f + 0.25f * j;
    dc_head_logits(&lws, X, N, z);
    for (int i = 0; i < N * C; i++) zr[i] = zj[i] * lws.scales[i % C];
    EXPECT(tu_max_rel_err(z, zr, N * C, 1e-6) < 1e-6);

    /* logit adjustment: tau = 0 is the joint head exactly; tau = 1 subtracts log pi */
    dc_head la;
    REQUIRE(dc_head_init_logit_adj(&la, &joint, counts, 0.0f) == DC_OK);
    dc_head_logits(&la, X, N, z);
    EXPECT(memcmp(z, zj, (size_t)N * C * 4) == 0);
    dc_head_free(&la);
    REQUIRE(dc_head_init_logit_adj(&la, &joint, counts, 1.0f) == DC_OK);
    dc_head_logits(&la, X, N, z);
    double tot = 0;
    for (int j = 0; j < C; j++) tot += (double)counts[j];
    for (int i = 0; i < N * C; i++) zr[i] = (float)(zj[i] - log((double)counts[i % C] / tot));
    EXPECT(tu_max_rel_err(z, zr, N * C, 1e-5) < 1e-5);
    dc_head_free(&la);

    /* tau-norm: tau = 0 is the joint head WITHOUT bias */
    dc_head tn;
    REQUIRE(dc_head_init_tau_norm(&tn, &joint, 0.0f, 0) == DC_OK);
    dc_head_logits(&tn, X, N, z);
    dc_linear_forward(N, D, C, X, W, NULL, zr);
    EXPECT(memcmp(z, zr, (size_t)N * C * 4) == 0);
    dc_head_free(&tn);
    const float taus[4] = {0.5f, 1.0f, 1.3f, 2.0f};
    for (int k = 0; k < 4; k++) {
        REQUIRE(dc_head_init_tau_norm(&tn, &joint, taus[k], k == 3) == DC_OK);
        double norms[7];
        dc_head_class_norms(&tn, norms);
        int ok = 1;
        for (int j = 0; j < C; j++) {
            double n0 = 0;
            for (int d = 0; d < D; d++) n0 += (double)W[j * D + d] * W[j * D + d];
            n0 = sqrt(n0);
            /* the normalised row W_j / ||W_j||^tau has norm ||W_j||^(1 - tau) */
            ok &= fabs(norms[j] - pow(n0, 1.0 - taus[k])) <= 1e-5 * pow(n0, 1.0 - taus[k]);
        }
        EXPECTF(ok, "tau-norm row norms at tau %.1f", taus[k]);
        /* logits against the naive formula x . (W_j / ||W_j||^tau) (+ b_j with keep_bias) */
        for (int n = 0; n < N; n++)
            for (int j = 0; j < C; j++) {
                double n0 = 0, dot = 0;
                for (int d = 0; d < D; d++) {
                    n0 += (double)W[j * D + d] * W[j * D + d];
                }
                double f = pow(sqrt(n0), -(double)taus[k]);
                for (int d = 0; d < D; d++) dot += (double)X[n * D + d] * (W[j * D + d] * f);
                zr[n * C + j] = (float)(dot + (k == 3 ? b[j] : 0.0));
            }
        dc_head_logits(&tn, X, N, z);
        double e = tu_tensor_rel_err(z, zr, N * C, 1e-6);
        EXPECTF(e < 1e-5, "tau-norm logits at tau %.1f: rel err %.3g", taus[k], e);
        dc_head_free(&tn);
    }
    /* bad inputs */
    EXPECT(dc_head_init_tau_norm(&tn, &lws, 1.0f, 0) == DC_FAIL && contains(dc_last_error(), "lws"));
    int64_t zero[7] = {0};
    EXPECT(dc_head_init_logit_adj(&la, &joint, zero, 1.0f) == DC_FAIL &&
           contains(dc_last_error(), "sum to 0"));
    dc_head bad;
    EXPECT(dc_head_init(&bad, DC_HEAD_KIND_LINEAR, 0, 3) == DC_FAIL &&
           contains(dc_last_error(), "D must be"));

    dc_head_free(&lws);
    dc_head_free(&joint);
    free(W);
    free(b);
    free(X);
    free(z);
    free(zj);
    free(zr);
}

/* ---- the sweep ----------------------------------------------------------------------------------------- */

static void test_sweep(void) {
    double g[DC_TAU_MAX];
    EXPECT(dc_tau_grid_default(g) == 21);
    EXPECT(g[0] == 0.0 && g[20] == 2.0 && g[3] == 3 * (2.0 / 20.0) && fabs(g[10] - 1.0) < 1e-15);

    /* a joint head biased to the head classes on long-tailed clusters: its weights scale with log n_j */
    lt_data d;
    lt_make(&d, 8, 16, 300, 60.0, 40, 2.2, 5);
    float *W = dc_malloc((size_t)d.C * d.D * 4), b[8];
    for (int j = 0; j < d.C; j++) {
        float gj = (float)(0.4 + 0.25 * log((double)d.counts[j]));
        for (int e = 0; e < d.D; e++) W[j * d.D + e] = d.mu[j * d.D + e] * gj;
        b[j] = (float)(0.3 * log((double)d.counts[j]));
    }
    dc_head joint;
    REQUIRE(dc_head_init_linear(&joint, d.D, d.C, W, b) == DC_OK);
    for (int fam = 0; fam < 2; fam++) {
        dc_tau_sweep sw;
        REQUIRE(dc_tau_sweep_init(&sw, (dc_sweep_family)fam, &joint, d.counts, NULL, 0, 0) == DC_OK);
        EXPECT(sw.n_taus == 21);
        /* two "ranks": add halves into two sweeps, sum the counters */
        dc_tau_sweep sw1;
        REQUIRE(dc_tau_sweep_init(&sw1, (dc_sweep_family)fam, &joint, d.counts, NULL, 0, 0) == DC_OK);
        int half = (int)d.Nt / 2;
        dc_tau_sweep_add(&sw, d.Xt, d.yt, half);
        dc_tau_sweep_add(&sw1, d.Xt + (size_t)half * d.D, d.yt + half, (int)d.Nt - half);
        for (size_t i = 0; i < (size_t)21 * 3 * d.C; i++) sw.counts[i] += sw1.counts[i];
        dc_tau_sweep_finish(&sw, d.counts);
        int rows_ok = 1, best_ok = 1;
        for (int k = 0; k < sw.n_taus; k++) {
            dc_head h;
            REQUIRE(dc_tau_sweep_make_head(&sw, d.counts, sw.taus[k], &h) == DC_OK);
            dc_metrics_summary s;
            evaluate(&h, d.Xt, d.yt, (int)d.Nt, d.counts, &s);
            rows_ok &= s.top1 == sw.rows[k].s.top1 && s.macro_top1 == sw.rows[k].s.macro_top1 &&
                       s.many == sw.rows[k].s.many;
            best_ok &= sw.rows[sw.best].s.macro_top1 >= sw.rows[k].s.macro_top1;
            dc_head_free(&h);
        }
        EXPECTF(rows_ok, "%s sweep rows equal the heads' own metrics", fam ? "LA" : "tau-norm");
        EXPECT(best_ok);
        /* on this biased head, re-balancing helps: the chosen tau beats tau = 0 on macro */
        EXPECTF(sw.rows[sw.best].s.macro_top1 > sw.rows[0].s.macro_top1 + 0.02 && sw.taus[sw.best] > 0,
                "%s: chosen tau %.1f macro %.3f vs tau 0 %.3f", fam ? "LA" : "tau-norm", sw.taus[sw.best],
                sw.rows[sw.best].s.macro_top1, sw.rows[0].s.macro_top1);
        printf("  %s sweep on biased synthetic head: tau 0 macro %.3f -> chosen tau %.1f macro %.3f\n",
               fam ? "logit-adjustment" : "tau-norm", sw.rows[0].s.macro_top1, sw.taus[sw.best],
               sw.rows[sw.best].s.macro_top1);
        if (fam == 1) {
            /* LA tau = 0 row is the joint classifier's evaluation */
            dc_metrics_summary s;
            evaluate(&joint, d.Xt, d.yt, (int)d.Nt, d.counts, &s);
            EXPECT(s.macro_top1 == sw.rows[0].s.macro_top1 && s.top1 == sw.rows[0].s.top1);
        }
        dc_tau_sweep_free(&sw);
        dc_tau_sweep_free(&sw1);
    }
    /* ties: with equal row norms tau-norm cannot change any prediction -> every row ties -> smallest tau */
    {
        float *Wn = dc_malloc((size_t)d.C * d.D * 4);
        for (int j = 0; j < d.C; j++) {
            double ss = 0;
            for (int e = 0; e < d.D; e++) ss += (double)d.mu[j * d.D + e] * d.mu[j * d.D + e];
            for (int e = 0; e < d.D; e++) Wn[j * d.D + e] = (float)(d.mu[j * d.D + e] / sqrt(ss));
        }
        dc_head hn;
        REQUIRE(dc_head_init_linear(&hn, d.D, d.C, Wn, NULL) == DC_OK);
        const double taus[4] = {1.5, 0.5, 2.0, 1.0};
        dc_tau_sweep sw;
        REQUIRE(dc_tau_sweep_init(&sw, DC_SWEEP_TAU_NORM, &hn, d.counts, taus, 4, 0) == DC_OK);
        dc_tau_sweep_add(&sw, d.Xt, d.yt, (int)d.Nt);
        dc_tau_sweep_finish(&sw, d.counts);
        EXPECTF(dc_tau_sweep_best_tau(&sw) == 0.5, "tie-break chose %.2f", dc_tau_sweep_best_tau(&sw));
        /* the JSON table */
        char *buf = NULL;
        size_t len = 0;
        FILE *fp = open_memstream(&buf, &len);
        dc_json_writer w;
        dc_json_init(&w, fp, 0);
        EXPECT(dc_tau_sweep_write_json(&sw, &w) == DC_OK && dc_json_finish(&w) == DC_OK);
        fclose(fp);
        EXPECTF(contains(buf, "\"chosen_tau\":0.5") && contains(buf, "\"family\":\"tau_norm\""), "json: %s",
                buf);
        free(buf);
        dc_tau_sweep_free(&sw);
        const double bad[1] = {NAN};
        EXPECT(dc_tau_sweep_init(&sw, DC_SWEEP_TAU_NORM, &hn, d.counts, bad, 1, 0) == DC_FAIL &&
               contains(dc_last_error(), "tau[0]"));
        dc_head_free(&hn);
        free(Wn);
    }
    dc_head_free(&joint);
    free(W);
    lt_free(&d);
}

/* ---- cRT and LWS behaviour ----------------------------------------------------------------------------- */

static void test_crt_behaviour(void) {
    clock_t t0 = clock();
    lt_data d;
    lt_make(&d, 10, 24, 500, 100.0, 200, 4.0, 7);
    dc_head_train_opts o;
    dc_head_train_defaults(&o);
    o.num_epochs = 12;
    o.batch_size = 64;
    o.lr = 0.1f;
    o.seed = 3;

    dc_head crt, ib;
    REQUIRE(dc_head_init_linear(&crt, d.D, d.C, NULL, NULL) == DC_OK &&
            dc_head_reset_linear(&crt, 9) == DC_OK);
    REQUIRE(dc_head_copy(&ib, &crt) == DC_OK);
    double losses[12];
    o.epoch_loss = losses;
    REQUIRE(dc_head_train(&crt, &o, d.X, d.y, d.N) == DC_OK);
    EXPECTF(losses[11] < 0.5 * losses[0], "cRT loss %.3f -> %.3f", losses[0], losses[11]);
    o.sampler.type = DC_SAMPLER_INSTANCE;
    o.epoch_loss = NULL;
    REQUIRE(dc_head_train(&ib, &o, d.X, d.y, d.N) == DC_OK);

    dc_metrics_summary sc, si;
    evaluate(&crt, d.Xt, d.yt, (int)d.Nt, d.counts, &sc);
    evaluate(&ib, d.Xt, d.yt, (int)d.Nt, d.counts, &si);
    printf(
        "  cRT (class-aware): macro %.3f many %.3f medium %.3f few %.3f | instance-balanced fit: macro %.3f "
        "many %.3f medium %.3f few %.3f (%.2f s)\n",
        sc.macro_top1, sc.many, sc.medium, sc.few, si.macro_top1, si.many, si.medium, si.few,
        (double)(clock() - t0) / CLOCKS_PER_SEC);
    EXPECTF(sc.macro_top1 > 0.90, "cRT macro %.3f", sc.macro_top1);
    EXPECTF(sc.few > si.few + 0.05, "cRT few %.3f vs instance-balanced few %.3f", sc.few, si.few);
    EXPECT(sc.macro_top1 > si.macro_top1);
    dc_head_free(&crt);
    dc_head_free(&ib);
    lt_free(&d);
}

static void test_lws_behaviour(void) {
    lt_data d;
    lt_make(&d, 10, 16, 400, 100.0, 50, 2.5, 8);
    /* a joint head whose weight norms grow with class size (what instance-balanced training produces) */
    float *W = dc_malloc((size_t)d.C * d.D * 4), b[10] = {0};
    for (int j = 0; j < d.C; j++)
        for (int e = 0; e < d.D; e++)
            W[j * d.D + e] = d.mu[j * d.D + e] * (float)(0.3 + 0.2 * log((double)d.counts[j]));
    dc_head joint, lws;
    REQUIRE(dc_head_init_linear(&joint, d.D, d.C, W, b) == DC_OK);
    REQUIRE(dc_head_init_lws(&lws, &joint) == DC_OK);
    dc_head_train_opts o;
    dc_head_train_defaults(&o);
    o.num_epochs = 5;
    o.batch_size = 32;
    o.lr = 0.2f;
    REQUIRE(dc_head_train(&lws, &o, d.X, d.y, d.N) == DC_OK);
    double s_many = 0, s_few = 0;
    int n_many = 0, n_few = 0;
    for (int j = 0; j < d.C; j++) {
        if (d.counts[j] > 100) s_many += lws.scales[j], n_many++;
        if (d.counts[j] < 20) s_few += lws.scales[j], n_few++;
    }
    s_many /= n_many;
    s_few /= n_few;
    dc_metrics_summary sj, sl;
    evaluate(&joint, d.Xt, d.yt, (int)d.Nt, d.counts, &sj);
    evaluate(&lws, d.Xt, d.yt, (int)d.Nt, d.counts, &sl);
    printf("  LWS: mean scale many %.3f few %.3f; macro joint %.3f -> LWS %.3f, few %.3f -> %.3f\n", s_many,
           s_few, sj.macro_top1, sl.macro_top1, sj.few, sl.few);
    EXPECTF(s_few > 1.2 * s_many, "LWS scales: few %.3f vs many %.3f", s_few, s_many);
    EXPECT(sl.few > sj.few && sl.macro_top1 > sj.macro_top1);
    /* W and b stay frozen */
    EXPECT(memcmp(lws.W, joint.W, (size_t)d.C * d.D * 4) == 0 &&
           memcmp(lws.b, joint.b, (size_t)d.C * 4) == 0);
    dc_head_free(&joint);
    dc_head_free(&lws);
    free(W);
    lt_free(&d);
}

/* ---- gradient checks ----------------------------------------------------------------------------------- */

/* (1/B) sum_n CE(z_n + offset, y_n) in double, z from double parameters */
static double naive_loss(dc_head_kind kind, const double *W, const double *bb, const double *s,
                         const float *X, const int32_t *y, const int64_t *idx, int n, int B, int D, int C,
                         const float *off) {
    double L = 0, z[16];
    for (int i = 0; i < n; i++) {
        const float *x = X + (size_t)idx[i] * D;
        double m = -INFINITY;
        for (int j = 0; j < C; j++) {
            double u = bb[j];
            for (int e = 0; e < D; e++) u += W[j * D + e] * x[e];
            z[j] = (kind == DC_HEAD_KIND_LWS ? s[j] * u : u) + off[j];
            if (z[j] > m) m = z[j];
        }
        double se = 0;
        for (int j = 0; j < C; j++) se += exp(z[j] - m);
        L += m + log(se) - z[y[idx[i]]];
    }
    return L / B;
}

static void test_gradients(void) {
    const int C = 6, D = 5, N = 120, B = 12;
    float *X = randn_matrix(31, (int64_t)N * D, 1.0, 0.2);
    int32_t *y = dc_malloc(N * sizeof(int32_t));
    for (int i = 0; i < N; i++) y[i] = (int32_t)(i % C == 5 && i % 4 == 1 ? 0 : i % C); /* uneven */
    float off[6] = {0.3f, -0.2f, 0.5f, -1.0f, 0.1f, 0.0f};
    for (int kind = 0; kind < 2; kind++) {
        dc_head h, lin;
        REQUIRE(dc_head_init_linear(&lin, D, C, NULL, NULL) == DC_OK &&
                dc_head_reset_linear(&lin, 4) == DC_OK);
        if (kind == 0) {
            REQUIRE(dc_head_copy(&h, &lin) == DC_OK);
        } else {
            REQUIRE(dc_head_init_lws(&h, &lin) == DC_OK);
            for (int j = 0; j < C; j++) h.scales[j] = 0.6f + 0.3f * j;
        }
        dc_head_train_opts o;
        dc_head_train_defaults(&o);
        o.batch_size = B;
        o.num_epochs = 1;
        o.loss_offset = off;
        dc_head_trainer *t;
        REQUIRE(dc_head_trainer_create(&t, &h, &o, y, N) == DC_OK);
        REQUIRE(dc_head_trainer_backward(t, 3, X) == DC_OK);
        const float *g = dc_head_trainer_grad(t);
        int nb;
        const int64_t *idx = dc_head_trainer_batch(t, &nb);
        REQUIRE(nb == B);
        double W[30], bb[6], s[6];
        for (int i = 0; i < C * D; i++) W[i] = h.W[i];
        for (int j = 0; j < C; j++) bb[j] = h.b[j], s[j] = h.scales[j];
        dc_head_kind k = h.kind;
        double L = naive_loss(k, W, bb, s, X, y, idx, B, B, D, C, off);
        size_t P = dc_head_num_trainable(&h);
        EXPECTF(fabs(g[P] / B - L) < 1e-5 * fabs(L), "%s loss %.8f vs naive %.8f", dc_head_kind_name(k),
                g[P] / B, L);
        double worst = 0, gmax = 0;
        const double eps = 1e-5;
        for (size_t p = 0; p < P; p++) {
            double *q = kind == 0 ? (p < (size_t)C * D ? &W[p] : &bb[p - (size_t)C * D]) : &s[p];
            double keep = *q;
            *q = keep + eps;
            double lp = naive_loss(k, W, bb, s, X, y, idx, B, B, D, C, off);
            *q = keep - eps;
            double lm = naive_loss(k, W, bb, s, X, y, idx, B, B, D, C, off);
            *q = keep;
            double fd = (lp - lm) / (2 * eps);
            if (fabs(fd - g[p]) > worst) worst = fabs(fd - g[p]);
            if (fabs(fd) > gmax) gmax = fabs(fd);
        }
        EXPECTF(worst < 1e-5 * (gmax > 1e-3 ? gmax : 1e-3) + 1e-7,
                "%s gradient: max |fd - analytic| %.3g (scale %.3g)", dc_head_kind_name(k), worst, gmax);
        printf("  %s gradient check: %zu parameters, max |fd - analytic| = %.2e (max |g| %.2e)\n",
               dc_head_kind_name(k), P, worst, gmax);
        dc_head_trainer_free(t);
        dc_head_free(&h);
        dc_head_free(&lin);
    }
    free(X);
    free(y);
}

/* ---- distributed simulation, determinism, feature source, no allocation -------------------------------- */

typedef struct {
    dc_head_trainer *other; /* rank 1, driven from rank 0's reduce */
    const float *X;
    int64_t step;
    long calls;
} sim_ctx;

static void sim_reduce(float *grad, size_t n, void *vctx) {
    sim_ctx *c = vctx;
    c->calls++;
    /* rank 1 computes its share of the same global step; the "allreduce" sums both vectors on both ranks */
    REQUIRE(dc_head_trainer_backward(c->other, c->step, c->X) == DC_OK);
    float *g1 = dc_head_trainer_grad(c->other);
    for (size_t i = 0; i < n; i++) grad[i] += g1[i];
    memcpy(g1, grad, n * sizeof(float));
    dc_head_trainer_apply(c->other, c->step);
    c->step++;
}

typedef struct {
    const float *X;
    int D;
    int fail_epoch;
    int max_epoch;
} src_ctx;

static int matrix_source(void *vctx, const int64_t *idx, int n, int epoch, float *out) {
    src_ctx *c = vctx;
    if (epoch == c->fail_epoch) return DC_ERR("synthetic feature-source failure");
    if (epoch > c->max_epoch) c->max_epoch = epoch;
    for (int i = 0; i < n; i++)
        memcpy(out + (size_t)i * c->D, c->X + (size_t)idx[i] * c->D, c->D * sizeof(float));
    return DC_OK;
}

static void test_distributed_and_determinism(void) {
    lt_data d;
    lt_make(&d, 8, 12, 200, 50.0, 10, 2.0, 9);
    for (int kind = 0; kind < 2; kind++) {
        dc_head base;
        REQUIRE(dc_head_init_linear(&base, d.D, d.C, NULL, NULL) == DC_OK &&
                dc_head_reset_linear(&base, 1) == DC_OK);
        dc_head single, again, r0, r1, viasrc;
        if (kind == 0) {
            REQUIRE(dc_head_copy(&single, &base) == DC_OK);
        } else {
            REQUIRE(dc_head_init_lws(&single, &base) == DC_OK);
        }
        REQUIRE(dc_head_copy(&again, &single) == DC_OK && dc_head_copy(&r0, &single) == DC_OK &&
                dc_head_copy(&r1, &single) == DC_OK && dc_head_copy(&viasrc, &single) == DC_OK);
        dc_head_train_opts o;
        dc_head_train_defaults(&o);
        o.num_epochs = 3;
        o.batch_size = 32;
        o.lr = 0.1f;
        o.seed = 77;
        o.shuffle_in_batch = 1;
        REQUIRE(dc_head_train(&single, &o, d.X, d.y, d.N) == DC_OK);
        REQUIRE(dc_head_train(&again, &o, d.X, d.y, d.N) == DC_OK);
        EXPECTF(memcmp(single.slab, again.slab, single.slab_len * 4) == 0, "%s: two runs differ",
                dc_head_kind_name(single.kind));

        /* feature source = matrix path */
        src_ctx sc = {d.X, d.D, -1, -1};
        dc_head_train_opts os = o;
        os.source = matrix_source;
        os.source_ctx = &sc;
        REQUIRE(dc_head_train(&viasrc, &os, NULL, d.y, d.N) == DC_OK);
        EXPECT(memcmp(single.slab, viasrc.slab, single.slab_len * 4) == 0);
        EXPECT(sc.max_epoch == o.num_epochs - 1);
        sc.fail_epoch = 1;
        EXPECT(dc_head_train(&viasrc, &os, NULL, d.y, d.N) == DC_FAIL);
        EXPECTF(contains(dc_last_error(), "synthetic feature-source failure") &&
                    contains(dc_last_error(), "epoch 1"),
                "message: %s", dc_last_error());

        /* two ranks */
        dc_head_train_opts o1 = o;
        o1.world_size = 2;
        o1.rank = 1;
        o1.reduce = NULL;
        dc_head_trainer *t1 = NULL;
        /* rank 1 is driven step by step; its reduce is done by rank 0's callback */
        o1.reduce = sim_reduce; /* never called: the simulation calls backward/apply directly */
        REQUIRE(dc_head_trainer_create(&t1, &r1, &o1, d.y, d.N) == DC_OK);
        sim_ctx ctx = {t1, d.X, 0, 0};
        dc_head_train_opts o0 = o;
        o0.world_size = 2;
        o0.rank = 0;
        o0.reduce = sim_reduce;
        o0.reduce_ctx = &ctx;
        REQUIRE(dc_head_train(&r0, &o0, d.X, d.y, d.N) == DC_OK);
        dc_head_refresh(&r1);
        EXPECT(ctx.calls == dc_head_trainer_total_steps(t1));
        EXPECT(memcmp(r0.slab, r1.slab, r0.slab_len * 4) == 0);
        size_t P = dc_head_num_trainable(&single);
        const float *ps = kind == 0 ? single.W : single.scales, *p0 = kind == 0 ? r0.W : r0.scales;
        double e = tu_tensor_rel_err(p0, ps, (long)P, 1e-6);
        EXPECTF(e < 1e-5, "%s: 2 simulated ranks vs single process rel err %.3g",
                dc_head_kind_name(single.kind), e);
        float *ones = dc_malloc(P * sizeof(float));
        for (size_t i = 0; i < P; i++) ones[i] = 1.0f;
        double changed = tu_tensor_rel_err(ps, kind == 0 ? base.W : ones, (long)P, 1e-6);
        free(ones);
        EXPECT(changed > 1e-2);
        printf("  %s: 2 simulated ranks vs 1 process: max rel diff %.2e after %lld steps (training moved the "
               "parameters by %.2e)\n",
               dc_head_kind_name(single.kind), e, (long long)ctx.calls, changed);

        /* no allocation in steady-state steps, logits and sweep blocks */
        dc_head_trainer *t;
        REQUIRE(dc_head_trainer_create(&t, &again, &o, d.y, d.N) == DC_OK);
        for (int s = 0; s < 2; s++) REQUIRE(dc_head_trainer_step(t, s, d.X, NULL) == DC_OK);
        float *z = dc_malloc((size_t)d.Nt * d.C * 4);
        dc_head_logits(&again, d.Xt, (int)d.Nt, z);
        dc_tau_sweep sw;
        REQUIRE(dc_tau_sweep_init(&sw, DC_SWEEP_TAU_NORM, &base, d.counts, NULL, 0, 0) == DC_OK);
        dc_tau_sweep_add(&sw, d.Xt, d.yt, (int)d.Nt);
        n_allocs = 0;
        counting = 1;
        for (int s = 2; s < 20; s++) dc_head_trainer_step(t, s, d.X, NULL);
        dc_head_logits(&again, d.Xt, (int)d.Nt, z);
        dc_tau_sweep_add(&sw, d.Xt, d.yt, (int)d.Nt);
        counting = 0;
        long ours = our_allocs();
        EXPECTF(ours == 0, "%ld allocations from decouple's code in steady state", ours);
        if (!DC_ALLOC_HOOKS && kind == 0) printf("  (sanitizer build: the no-allocation check is skipped)\n");
        dc_tau_sweep_free(&sw);
        free(z);
        dc_head_trainer_free(t);
        dc_head_trainer_free(t1);
        dc_head_free(&base);
        dc_head_free(&single);
        dc_head_free(&again);
        dc_head_free(&r0);
        dc_head_free(&r1);
        dc_head_free(&viasrc);
    }
    /* bad options name what is wrong */
    {
        dc_head h;
        REQUIRE(dc_head_init_linear(&h, d.D, d.C, NULL, NULL) == DC_OK);
        dc_head_train_opts o;
        dc_head_train_defaults(&o);
        o.batch_size = 33;
        o.world_size = 2;
        o.reduce = sim_reduce;
        EXPECT(dc_head_train(&h, &o, d.X, d.y, d.N) == DC_FAIL && contains(dc_last_error(), "not divisible"));
        o.batch_size = 32;
        o.reduce = NULL;
        EXPECT(dc_head_train(&h, &o, d.X, d.y, d.N) == DC_FAIL && contains(dc_last_error(), "reduce"));
        o.world_size = 1;
        o.batch_size = (int)d.N + 1;
        EXPECT(dc_head_train(&h, &o, d.X, d.y, d.N) == DC_FAIL && contains(dc_last_error(), "sampler"));
        o.batch_size = 32;
        EXPECT(dc_head_train(&h, &o, NULL, d.y, d.N) == DC_FAIL &&
               contains(dc_last_error(), "feature source"));
        dc_head ncm;
        REQUIRE(dc_ncm_fit_features(d.X, d.y, d.N, d.D, d.C, DC_NCM_L2N, DC_NCM_DIST_COS, &ncm) == DC_OK);
        EXPECT(dc_head_train(&ncm, &o, d.X, d.y, d.N) == DC_FAIL && contains(dc_last_error(), "ncm"));
        dc_head_free(&ncm);
        dc_head_free(&h);
    }
    lt_free(&d);
}

/* ---- serialisation ------------------------------------------------------------------------------------- */

static void test_serialisation(void) {
    lt_data d;
    lt_make(&d, 5, 7, 60, 10.0, 4, 2.0, 10);
    float *W = randn_matrix(41, 35, 1.0, 0.0), *b = randn_matrix(42, 5, 1.0, 0.0);
    dc_head joint;
    REQUIRE(dc_head_init_linear(&joint, 7, 5, W, b) == DC_OK);
    dc_head heads[6];
    REQUIRE(dc_head_copy(&heads[0], &joint) == DC_OK);
    REQUIRE(dc_head_init_lws(&heads[1], &joint) == DC_OK);
    for (int j = 0; j < 5; j++) heads[1].scales[j] = 1.0f + 0.1f * j;
    REQUIRE(dc_head_init_tau_norm(&heads[2], &joint, 0.7f, 0) == DC_OK);
    REQUIRE(dc_head_init_logit_adj(&heads[3], &joint, d.counts, 1.0f) == DC_OK);
    REQUIRE(dc_ncm_fit_features(d.X, d.y, d.N, 7, 5, DC_NCM_CL2N, DC_NCM_DIST_L2, &heads[4]) == DC_OK);
    REQUIRE(dc_head_init_tau_norm(&heads[5], &joint, 1.1f, 1) == DC_OK);
    char dir[] = "/tmp/dc_test_heads_XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    char path[256];
    float z0[64 * 5], z1[64 * 5];
    const int n = (int)d.Nt;
    for (int k = 0; k < 6; k++) {
        snprintf(path, sizeof path, "%s/head%d.safetensors", dir, k);
        REQUIRE(dc_head_save(&heads[k], path) == DC_OK);
        dc_head h;
        REQUIRE(dc_head_load(&h, path) == DC_OK);
        dc_head_logits(&heads[k], d.Xt, n, z0);
        dc_head_logits(&h, d.Xt, n, z1);
        EXPECTF(h.kind == heads[k].kind && memcmp(z0, z1, (size_t)n * 5 * 4) == 0, "file round trip of %s",
                dc_head_kind_name(heads[k].kind));
        dc_head_free(&h);
        /* meta + slab, as a broadcast would move them */
        int32_t meta[DC_HEAD_META_LEN];
        dc_head_meta(&heads[k], meta);
        REQUIRE(dc_head_init_from_meta(&h, meta) == DC_OK);
        REQUIRE(h.slab_len == heads[k].slab_len);
        memcpy(h.slab, heads[k].slab, h.slab_len * 4);
        dc_head_logits(&h, d.Xt, n, z1);
        EXPECT(memcmp(z0, z1, (size_t)n * 5 * 4) == 0 && h.tau == heads[k].tau);
        dc_head_free(&h);
        unlink(path);
    }
    /* a tensor the kind does not store is reported by name */
    {
        int32_t meta[DC_HEAD_META_LEN];
        dc_tensor t[DC_HEAD_MAX_TENSORS + 1];
        int nt = dc_head_tensors(&heads[2], meta, t); /* tau-norm without bias */
        t[nt] = t[1];
        snprintf(t[nt].name, sizeof t[nt].name, "head.bias");
        t[nt].ndim = 1;
        t[nt].shape[0] = 5;
        dc_head h;
        EXPECT(dc_head_from_tensors(&h, t, nt + 1, "x.safetensors") == DC_FAIL);
        EXPECTF(contains(dc_last_error(), "x.safetensors") && contains(dc_last_error(), "head.bias"),
                "message: %s", dc_last_error());
        t[1].shape[1] = 6; /* weight [5, 6] instead of [5, 7] */
        EXPECT(dc_head_from_tensors(&h, t, nt, "z.safetensors") == DC_FAIL);
        EXPECTF(contains(dc_last_error(), "head.weight") && contains(dc_last_error(), "expected [5, 7]"),
                "message: %s", dc_last_error());
        t[1].shape[1] = 7;
        meta[0] = 99;
        EXPECT(dc_head_from_tensors(&h, t, nt, "y.safetensors") == DC_FAIL &&
               contains(dc_last_error(), "version"));
    }
    rmdir(dir);
    for (int k = 0; k < 6; k++) dc_head_free(&heads[k]);
    dc_head_free(&joint);
    free(W);
    free(b);
    lt_free(&d);
}

int main(void) {
    test_ncm();
    test_linear_family();
    test_sweep();
    test_crt_behaviour();
    test_lws_behaviour();
    test_gradients();
    test_distributed_and_determinism();
    test_serialisation();
    return tu_finish("test_heads");
}
