/*
 * test_samplers.c: the four samplers draw from the distributions the paper defines, with the structure of
 * the reference's samplers.
 *
 *   - Chi-square goodness of fit (p = 0.001) of the class frequencies against p_j = n_j^q / sum n_i^q for
 *     q = 1, 1/2, 0 (power sampler; class-aware for q = 0) and the progressive p_j(t) at t = 0, T/2, T-1,
 * plus instance-level fits (uniform within a class) and negative controls that a wrong q IS rejected. The
 * chi-square tail is computed here (regularised incomplete gamma) and checked against table values.
 *   - Class-aware structure: k consecutive same-class samples, round-robin over classes, without
 *     replacement inside a class until it is exhausted.
 *   - Instance-balanced epochs are (prefixes of) permutations, uniformly random.
 *   - Progressive lambda schedule = the reference's linspace(0, 1, T)[clip(t, 0, T-1)].
 *   - Bad inputs fail with a message naming the key or the class.
 * Class counts: a C = 10 long-tailed profile n_i = int(500 * 0.01^(i/9)) = 500, 299, ..., 5 (N = 1236).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "samplers/sampler.h"
#include "tests/testutil.h"

#define C_LT  10
#define ALPHA 0.001

/* ---- chi-square tail: Q(a, x) = Gamma(a, x) / Gamma(a), the regularised upper incomplete gamma ------------
 * P(chi2_df > x) = Q(df/2, x/2). For x < a + 1 the series P(a,x) = e^-x x^a / Gamma(a) * sum_n x^n /
 * (a(a+1).. (a+n)) converges fast; otherwise the continued fraction Q = e^-x x^a / Gamma(a) * 1/(x+1-a-
 * 1(1-a)/(x+3-a- ...)) evaluated with the modified Lentz method. */
static double gamma_q(double a, double x) {
    if (x <= 0) return 1.0;
    double log_prefix = -x + a * log(x) - lgamma(a);
    if (x < a + 1.0) {
        double term = 1.0 / a, sum = term;
        for (int n = 1; n < 100000; n++) {
            term *= x / (a + n);
            sum += term;
            if (fabs(term) < fabs(sum) * 1e-16) break;
        }
        return 1.0 - sum * exp(log_prefix);
    }
    const double tiny = 1e-300;
    double b = x + 1.0 - a, c = 1.0 / tiny, d = 1.0 / b, h = d;
    for (int i = 1; i < 100000; i++) {
        double an = -i * (i - a);
        b += 2.0;
        d = an * d + b;
        if (fabs(d) < tiny) d = tiny;
        c = b + an / c;
        if (fabs(c) < tiny) c = tiny;
        d = 1.0 / d;
        double delta = d * c;
        h *= delta;
        if (fabs(delta - 1.0) < 1e-16) break;
    }
    return exp(log_prefix) * h;
}

static double chi2_pvalue(double stat, int df) {
    return gamma_q(0.5 * df, 0.5 * stat);
}

/* The critical value x with P(chi2_df > x) = alpha, by bisection on the tail. */
static double chi2_critical(int df, double alpha) {
    double lo = 0, hi = df + 100.0 * sqrt(2.0 * df) + 100.0;
    for (int it = 0; it < 200; it++) {
        double mid = 0.5 * (lo + hi);
        if (chi2_pvalue(mid, df) > alpha)
            lo = mid;
        else
            hi = mid;
    }
    return 0.5 * (lo + hi);
}

/* Wilson-Hilferty: (chi2/df)^(1/3) is about normal with mean 1 - 2/(9df) and variance 2/(9df). */
static double chi2_critical_wh(int df, double z) {
    double v = 2.0 / (9.0 * df);
    double t = 1.0 - v + z * sqrt(v);
    return df * t * t * t;
}

/* Pearson's statistic of observed counts against probabilities (cells with p = 0 must be empty). */
static double chi2_stat(const int64_t *count, const double *p, int cells, int64_t total, int *df) {
    double stat = 0;
    int used = 0;
    *df = cells - 1;
    for (int i = 0; i < cells; i++) {
        if (p[i] <= 0) {
            if (count[i] > 0) return INFINITY;
            continue;
        }
        double e = p[i] * (double)total, d = (double)count[i] - e;
        stat += d * d / e;
        used++;
    }
    *df = used - 1;
    return stat;
}

static void test_chi2_math(void) {
    /* Table values: chi2_{0.95}(1) = 3.8415, chi2_{0.99}(2) = -2 ln 0.01 = 9.2103, chi2_{0.999}(9) = 27.877,
     * chi2_{0.999}(1) = 10.828, chi2_{0.999}(100) = 149.449. */
    EXPECT(fabs(chi2_critical(1, 0.05) - 3.8415) < 1e-3);
    EXPECT(fabs(chi2_critical(2, 0.01) - 9.2103) < 1e-3);
    EXPECT(fabs(chi2_critical(9, 0.001) - 27.877) < 2e-3);
    EXPECT(fabs(chi2_critical(1, 0.001) - 10.828) < 2e-3);
    EXPECT(fabs(chi2_critical(100, 0.001) - 149.449) < 5e-3);
    EXPECT(fabs(chi2_pvalue(2.0 * 3.0, 2) - exp(-3.0)) < 1e-12); /* df = 2: tail is e^{-x/2} */
    /* The two evaluations agree for large df (z_{0.999} = 3.090232). */
    for (int df = 9; df <= 2000; df *= 3) {
        double exact = chi2_critical(df, ALPHA), wh = chi2_critical_wh(df, 3.090232);
        EXPECTF(fabs(exact - wh) / exact < 0.01, "df %d: incomplete gamma %.3f vs Wilson-Hilferty %.3f", df,
                exact, wh);
    }
    printf("chi-square critical values at p = 0.001: df 9 -> %.3f, df 1235 -> %.3f\n",
           chi2_critical(9, ALPHA), chi2_critical(1235, ALPHA));
}

/* ---- fixtures ------------------------------------------------------------------------------------------ */

static int64_t lt_counts[C_LT];

/* Long-tailed labels, spread over the index range by a fixed permutation so classes are not contiguous. */
static int32_t *make_lt_labels(int64_t *N_out) {
    int64_t N = 0;
    for (int i = 0; i < C_LT; i++) {
        lt_counts[i] = (int64_t)(500.0 * pow(0.01, i / 9.0));
        N += lt_counts[i];
    }
    int32_t *labels = malloc((size_t)N * sizeof *labels);
    int64_t p = 0;
    for (int c = 0; c < C_LT; c++)
        for (int64_t j = 0; j < lt_counts[c]; j++) labels[p++] = c;
    uint64_t x = 12345;
    for (int64_t i = N - 1; i > 0; i--) { /* fixed shuffle (an LCG: independent of the code under test) */
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        int64_t j = (int64_t)((x >> 33) % (uint64_t)(i + 1));
        int32_t t = labels[i];
        labels[i] = labels[j];
        labels[j] = t;
    }
    *N_out = N;
    return labels;
}

static dc_sampler_cfg make_cfg(dc_sampler_type type, double q, int k, int T) {
    dc_sampler_cfg cfg = {type, k, q, T};
    return cfg;
}

static dc_sampler *make(dc_sampler_cfg cfg, const int32_t *labels, int64_t N, int C, uint64_t seed, int B,
                        int shuffle) {
    dc_sampler *s = NULL;
    int rc = dc_sampler_create(&cfg, labels, N, C, seed, 90, B, 1, shuffle, &s);
    if (rc != DC_OK) fprintf(stderr, "create failed: %s\n", dc_last_error());
    REQUIRE(rc == DC_OK && s);
    return s;
}

/* Class counts of epochs [e0, e0 + epochs) of one sampler. */
static int64_t count_classes(dc_sampler *s, const int32_t *labels, int e0, int epochs, int64_t *count,
                             int C) {
    memset(count, 0, (size_t)C * sizeof *count);
    int64_t total = 0;
    for (int e = e0; e < e0 + epochs; e++) {
        REQUIRE(dc_sampler_set_epoch(s, e) == DC_OK);
        int64_t len;
        const int64_t *st = dc_sampler_epoch_stream(s, &len);
        for (int64_t p = 0; p < len; p++) count[labels[st[p]]]++;
        total += len;
    }
    return total;
}

/* Fits counts to probs; expect_fit = 1: must not be rejected at ALPHA, 0: must be rejected. */
static void check_fit(const char *what, const int64_t *count, const double *probs, int cells, int64_t total,
                      int expect_fit) {
    int df;
    double stat = chi2_stat(count, probs, cells, total, &df);
    double pv = chi2_pvalue(stat, df), crit = chi2_critical(df, ALPHA);
    printf("  %-52s chi2 = %10.2f  df = %4d  crit(0.001) = %7.2f  p = %.3g  %s\n", what, stat, df, crit, pv,
           expect_fit ? "(fit)" : "(must reject)");
    if (expect_fit)
        EXPECTF(stat < crit, "%s: chi2 %.2f >= %.2f", what, stat, crit);
    else
        EXPECTF(stat > crit, "%s: wrong distribution not rejected (chi2 %.2f <= %.2f)", what, stat, crit);
}

static void power_probs(double q, double *p) {
    double total = 0;
    for (int c = 0; c < C_LT; c++) total += p[c] = pow((double)lt_counts[c], q);
    for (int c = 0; c < C_LT; c++) p[c] /= total;
}

/* ---- class-frequency fits ------------------------------------------------------------------------------ */

static void test_class_frequencies(void) {
    int64_t N;
    int32_t *labels = make_lt_labels(&N);
    const int B = 48, E = 40;
    int64_t count[C_LT];
    double target[C_LT], sampler_probs[C_LT], other[C_LT];
    printf("class frequencies, C = 10, N = %lld, %d epochs of %lld draws:\n", (long long)N, E,
           (long long)(N / B * B));

    /* Power sampler for q = 1, 1/2, 0 and the negative controls. */
    const double qs[3] = {1.0, 0.5, 0.0};
    for (int qi = 0; qi < 3; qi++) {
        dc_sampler *s = make(make_cfg(DC_SAMPLER_POWER, qs[qi], 4, 0), labels, N, C_LT, 7 + qi, B, 0);
        int64_t total = count_classes(s, labels, 0, E, count, C_LT);
        power_probs(qs[qi], target);
        dc_sampler_class_probs(s, 0, sampler_probs);
        double worst = 0;
        for (int c = 0; c < C_LT; c++) worst = fmax(worst, fabs(sampler_probs[c] - target[c]));
        EXPECTF(worst < 1e-12, "power q=%g: class_probs differ from n^q/sum by %g", qs[qi], worst);
        char what[96];
        snprintf(what, sizeof what, "power q=%.1f vs n^q", qs[qi]);
        check_fit(what, count, target, C_LT, total, 1);
        /* Negative controls: the stream must be rejected against a neighbouring q. */
        double wrong_q = qs[qi] == 1.0 ? 0.5 : (qs[qi] == 0.5 ? 0.4 : 0.1);
        power_probs(wrong_q, other);
        snprintf(what, sizeof what, "power q=%.1f stream vs q=%.1f", qs[qi], wrong_q);
        check_fit(what, count, other, C_LT, total, 0);
        dc_sampler_free(s);
    }

    /* Instance-balanced (q = 1): each epoch is a permutation prefix, so counts are hypergeometric; the test
     * is conservative here, the permutation tests below carry the weight. */
    {
        dc_sampler *s = make(make_cfg(DC_SAMPLER_INSTANCE, 1, 4, 0), labels, N, C_LT, 11, B, 0);
        int64_t total = count_classes(s, labels, 0, E, count, C_LT);
        power_probs(1.0, target);
        check_fit("instance-balanced vs n_j/N", count, target, C_LT, total, 1);
        power_probs(0.5, other);
        check_fit("instance-balanced vs q=0.5", count, other, C_LT, total, 0);
        dc_sampler_free(s);
    }

    /* Class-aware (q = 0): round-robin makes the counts nearly exactly uniform. */
    {
        dc_sampler *s = make(make_cfg(DC_SAMPLER_CLASS_AWARE, 0, 4, 0), labels, N, C_LT, 13, B, 1);
        int64_t total = count_classes(s, labels, 0, E, count, C_LT);
        power_probs(0.0, target);
        dc_sampler_class_probs(s, 0, sampler_probs);
        for (int c = 0; c < C_LT; c++) EXPECT(fabs(sampler_probs[c] - 0.1) < 1e-15);
        check_fit("class-aware vs 1/C", count, target, C_LT, total, 1);
        power_probs(0.1, other);
        check_fit("class-aware vs q=0.1", count, other, C_LT, total, 0);
        dc_sampler_free(s);
    }

    /* Progressive, T = 20: independent streams of epoch t from different seeds. */
    {
        const int T = 20, ts[3] = {0, T / 2, T - 1};
        double lam_expected[3] = {0.0, 10.0 / 19.0, 1.0};
        for (int ti = 0; ti < 3; ti++) {
            int64_t total = 0;
            int64_t acc[C_LT] = {0};
            for (int seed = 0; seed < E; seed++) {
                dc_sampler *s =
                    make(make_cfg(DC_SAMPLER_PROGRESSIVE, 0, 4, T), labels, N, C_LT, 100 + seed, B, 1);
                total += count_classes(s, labels, ts[ti], 1, count, C_LT);
                for (int c = 0; c < C_LT; c++) acc[c] += count[c];
                if (seed == 0) {
                    dc_sampler_class_probs(s, ts[ti], sampler_probs);
                    EXPECT(fabs(dc_sampler_pb_lambda(s, ts[ti]) - lam_expected[ti]) < 1e-15);
                }
                dc_sampler_free(s);
            }
            double lam = lam_expected[ti];
            for (int c = 0; c < C_LT; c++) {
                target[c] = (1 - lam) * (double)lt_counts[c] / (double)N + lam / C_LT;
                EXPECT(fabs(sampler_probs[c] - target[c]) < 1e-12);
            }
            char what[96];
            snprintf(what, sizeof what, "progressive t=%d (lambda %.3f) vs p_j(t)", ts[ti], lam);
            check_fit(what, acc, target, C_LT, total, 1);
            /* Negative control: the stream of epoch t against the target of a different epoch. */
            double lam2 = ti == 0 ? 0.15 : (ti == 1 ? lam + 0.15 : 0.85);
            for (int c = 0; c < C_LT; c++)
                other[c] = (1 - lam2) * (double)lt_counts[c] / (double)N + lam2 / C_LT;
            snprintf(what, sizeof what, "progressive t=%d vs lambda %.3f", ts[ti], lam2);
            check_fit(what, acc, other, C_LT, total, 0);
        }
    }
    free(labels);
}

/* Instance level: the power sampler is uniform within a class, so instance i has probability p_{y_i} /
 * n_{y_i}; at q = 1 that is 1/N, the instance-balanced distribution (with replacement). */
static void test_instance_level_fit(void) {
    int64_t N;
    int32_t *labels = make_lt_labels(&N);
    const int B = 48, E = 100;
    int64_t *count = calloc((size_t)N, sizeof *count);
    double *p = malloc((size_t)N * sizeof *p), cls[C_LT];
    printf("instance-level frequencies (%d epochs):\n", E);
    const double qs[2] = {0.5, 1.0};
    for (int qi = 0; qi < 2; qi++) {
        dc_sampler *s = make(make_cfg(DC_SAMPLER_POWER, qs[qi], 4, 0), labels, N, C_LT, 21 + qi, B, 0);
        memset(count, 0, (size_t)N * sizeof *count);
        int64_t total = 0;
        for (int e = 0; e < E; e++) {
            REQUIRE(dc_sampler_set_epoch(s, e) == DC_OK);
            int64_t len;
            const int64_t *st = dc_sampler_epoch_stream(s, &len);
            for (int64_t i = 0; i < len; i++) count[st[i]]++;
            total += len;
        }
        power_probs(qs[qi], cls);
        for (int64_t i = 0; i < N; i++) p[i] = cls[labels[i]] / (double)lt_counts[labels[i]];
        char what[96];
        snprintf(what, sizeof what, "power q=%.1f per instance vs p_y/n_y", qs[qi]);
        check_fit(what, count, p, (int)N, total, 1);
        if (qs[qi] == 1.0) {
            double mx = 0;
            for (int64_t i = 0; i < N; i++) mx = fmax(mx, fabs(p[i] - 1.0 / (double)N));
            EXPECT(mx < 1e-15);
        }
        /* Negative control: a non-uniform split inside class 0 (half its samples twice as likely). */
        int64_t seen = 0;
        for (int64_t i = 0; i < N; i++)
            if (labels[i] == 0) p[i] = cls[0] / (double)lt_counts[0] * ((seen++ % 2) ? 4.0 / 3.0 : 2.0 / 3.0);
        snprintf(what, sizeof what, "power q=%.1f vs skewed within class 0", qs[qi]);
        check_fit(what, count, p, (int)N, total, 0);
        dc_sampler_free(s);
    }
    free(count);
    free(p);
    free(labels);
}

/* ---- instance-balanced: permutations ------------------------------------------------------------------- */

static void test_instance_permutation(void) {
    /* B divides N: every epoch is a full permutation of [0, N). */
    const int64_t N = 96;
    int32_t labels[96];
    for (int i = 0; i < N; i++) labels[i] = i % 3;
    dc_sampler *s = make(make_cfg(DC_SAMPLER_INSTANCE, 1, 4, 0), labels, N, 3, 5, 24, 0);
    EXPECT(dc_sampler_steps_per_epoch(s) == 4);
    int64_t prev[96];
    for (int e = 0; e < 5; e++) {
        REQUIRE(dc_sampler_set_epoch(s, e) == DC_OK);
        int64_t len;
        const int64_t *st = dc_sampler_epoch_stream(s, &len);
        REQUIRE(len == N);
        int seen[96] = {0};
        int ok = 1;
        for (int64_t i = 0; i < len; i++) {
            if (st[i] < 0 || st[i] >= N || seen[st[i]]++) ok = 0;
        }
        EXPECTF(ok, "epoch %d is not a permutation of [0, %lld)", e, (long long)N);
        if (e > 0) EXPECTF(memcmp(prev, st, sizeof prev) != 0, "epoch %d repeats epoch %d's order", e, e - 1);
        memcpy(prev, st, sizeof prev);
    }
    dc_sampler_free(s);

    /* The tail is dropped: N = 50, B = 10 ... 7: floor(N/B) steps of distinct samples. */
    int32_t l50[50];
    for (int i = 0; i < 50; i++) l50[i] = i % 5;
    s = make(make_cfg(DC_SAMPLER_INSTANCE, 1, 4, 0), l50, 50, 5, 9, 7, 0);
    EXPECT(dc_sampler_steps_per_epoch(s) == 7);
    REQUIRE(dc_sampler_set_epoch(s, 0) == DC_OK);
    int64_t len;
    const int64_t *st = dc_sampler_epoch_stream(s, &len);
    EXPECT(len == 49);
    int seen[50] = {0}, ok = 1;
    for (int64_t i = 0; i < len; i++)
        if (seen[st[i]]++) ok = 0;
    EXPECT(ok);
    dc_sampler_free(s);

    /* Uniform permutations: which sample comes first, and where sample 0 lands, over 4000 epochs (N = 50). */
    s = make(make_cfg(DC_SAMPLER_INSTANCE, 1, 4, 0), l50, 50, 5, 17, 10, 0);
    int64_t first[50] = {0}, where0[50] = {0};
    const int E = 4000;
    for (int e = 0; e < E; e++) {
        REQUIRE(dc_sampler_set_epoch(s, e) == DC_OK);
        st = dc_sampler_epoch_stream(s, &len);
        first[st[0]]++;
        for (int i = 0; i < 50; i++)
            if (st[i] == 0) where0[i]++;
    }
    double u[50];
    for (int i = 0; i < 50; i++) u[i] = 1.0 / 50;
    printf("instance-balanced permutations (N = 50, %d epochs):\n", E);
    check_fit("first sample of the epoch vs uniform", first, u, 50, E, 1);
    check_fit("position of sample 0 vs uniform", where0, u, 50, E, 1);
    /* Negative control: the same counts against a distribution that favours the lower half. */
    for (int i = 0; i < 50; i++) u[i] = i < 25 ? 1.2 / 50 : 0.8 / 50;
    check_fit("first sample vs lower half favoured", first, u, 50, E, 0);
    dc_sampler_free(s);
}

/* ---- class-aware structure ----------------------------------------------------------------------------- */

/* Per class, the draws in stream order, cut into chunks of n_c: every complete chunk is a permutation of the
 * class's samples and the last, partial chunk has no repeat (without replacement until exhausted). Returns 1
 * when that holds for every class. */
static int check_cycles(const int64_t *st, int64_t len, const int32_t *labels, int64_t N, int C) {
    int ok = 1;
    unsigned char *mark = calloc((size_t)N, 1);
    int64_t *drawn = calloc((size_t)C, sizeof *drawn), *cnt = calloc((size_t)C, sizeof *cnt);
    for (int64_t i = 0; i < N; i++) cnt[labels[i]]++;
    /* mark[i] = chunk parity in which i was last drawn + 1; a repeat inside a chunk is a failure. */
    for (int64_t p = 0; p < len; p++) {
        int c = labels[st[p]];
        unsigned char chunk = (unsigned char)(1 + (drawn[c] / cnt[c]) % 2);
        if (mark[st[p]] == chunk) ok = 0;
        mark[st[p]] = chunk;
        drawn[c]++;
    }
    free(mark);
    free(drawn);
    free(cnt);
    return ok;
}

static void test_class_aware_structure(void) {
    int64_t N;
    int32_t *labels = make_lt_labels(&N);
    const int B = 48;
    const int ks[3] = {4, 3,
                       7}; /* 7 > n_9 = 5: a visit wraps the class's cycle mid-group, as the reference */
    for (int ki = 0; ki < 3; ki++) {
        const int k = ks[ki];
        dc_sampler *s = make(make_cfg(DC_SAMPLER_CLASS_AWARE, 0, k, 0), labels, N, C_LT, 31 + ki, B, 0);
        int64_t *prev = malloc((size_t)N * sizeof *prev);
        for (int e = 0; e < 6; e++) {
            REQUIRE(dc_sampler_set_epoch(s, e) == DC_OK);
            int64_t len;
            const int64_t *st = dc_sampler_epoch_stream(s, &len);
            /* (1) Groups: positions [g*k, (g+1)*k) (the last one truncated at the epoch end) share a class.
             */
            int groups_ok = 1;
            for (int64_t p = 0; p < len; p++)
                if (p % k != 0 && labels[st[p]] != labels[st[p - 1]]) groups_ok = 0;
            EXPECTF(groups_ok, "k=%d epoch %d: a group of k consecutive samples mixes classes", k, e);
            /* (2) Round-robin: the classes of groups [r*C, (r+1)*C) are a permutation of [0, C) for every
             * complete round r; the last, partial round has distinct classes. */
            int64_t ngroups = (len + k - 1) / k;
            int rr_ok = 1;
            for (int64_t r = 0; r * C_LT < ngroups; r++) {
                int seen[C_LT] = {0};
                for (int64_t g = r * C_LT; g < (r + 1) * C_LT && g < ngroups; g++)
                    if (seen[labels[st[g * k]]]++) rr_ok = 0;
            }
            EXPECTF(rr_ok, "k=%d epoch %d: a class repeats inside a round of C visits", k, e);
            /* (2b) The class order is reshuffled at every wrap: consecutive complete rounds differ (two equal
             * random orders of 10 classes: probability 1/10!). */
            int reshuffled = 1;
            for (int64_t r = 1; (r + 1) * C_LT <= ngroups; r++) {
                int same = 1;
                for (int64_t g = 0; g < C_LT; g++)
                    if (labels[st[(r * C_LT + g) * k]] != labels[st[((r - 1) * C_LT + g) * k]]) same = 0;
                if (same) reshuffled = 0;
            }
            EXPECTF(reshuffled, "k=%d epoch %d: two consecutive rounds visit the classes in the same order",
                    k, e);
            /* (3) Runs: counting maximal same-class runs, every run length is a multiple of k except one that
             * ends the epoch (a class may end one round and start the next: a run of 2k). */
            int64_t run = 1;
            int runs_ok = 1;
            for (int64_t p = 1; p <= len; p++) {
                if (p < len && labels[st[p]] == labels[st[p - 1]]) {
                    run++;
                    continue;
                }
                if (p < len && run % k != 0) runs_ok = 0;
                run = 1;
            }
            EXPECTF(runs_ok, "k=%d epoch %d: a same-class run that is not a multiple of k", k, e);
            /* (4) Without replacement inside each class until exhausted. */
            EXPECTF(check_cycles(st, len, labels, N, C_LT),
                    "k=%d epoch %d: a class repeats a sample before its "
                    "cycle is exhausted",
                    k, e);
            if (e > 0)
                EXPECTF(memcmp(prev, st, (size_t)len * sizeof *st) != 0, "epochs %d and %d equal", e - 1, e);
            memcpy(prev, st, (size_t)len * sizeof *st);
        }
        free(prev);
        dc_sampler_free(s);
    }

    /* Successive cycles of a class are independent shuffles: for the smallest class (n = 5), the first
     * samples of cycles 2m and 2m+1 are uniform on the 25 pairs. (Reshuffling with a repeated random stream
     * would apply the same permutation again and pin the pair (a, pi(a)); e.g. a fixed point gives (x, x).)
     */
    {
        dc_sampler *s = make(make_cfg(DC_SAMPLER_CLASS_AWARE, 0, 4, 0), labels, N, C_LT, 51, B, 0);
        int64_t members[5], nm = 0, pairs[25] = {0}, npairs = 0;
        for (int64_t i = 0; i < N; i++)
            if (labels[i] == C_LT - 1) members[nm++] = i;
        REQUIRE(nm == 5);
        for (int e = 0; e < 300; e++) {
            REQUIRE(dc_sampler_set_epoch(s, e) == DC_OK);
            int64_t len, drawn = 0, first_prev = -1;
            const int64_t *st = dc_sampler_epoch_stream(s, &len);
            for (int64_t p = 0; p < len; p++) {
                if (labels[st[p]] != C_LT - 1) continue;
                if (drawn % 5 == 0) {
                    int64_t m = drawn / 5, slot = 0;
                    while (members[slot] != st[p]) slot++;
                    if (m % 2 == 0)
                        first_prev = slot;
                    else {
                        pairs[first_prev * 5 + slot]++;
                        npairs++;
                    }
                }
                drawn++;
            }
        }
        double u[25];
        for (int i = 0; i < 25; i++) u[i] = 1.0 / 25;
        printf("class-aware cycles (class of 5 samples, 300 epochs):\n");
        check_fit("first samples of consecutive cycles vs uniform pairs", pairs, u, 25, npairs, 1);
        for (int i = 0; i < 25; i++) u[i] = (i % 6 == 0) ? 1.3 / 25 : (1.0 - 5 * 1.3 / 25) / 20;
        check_fit("same pairs vs diagonal-heavy", pairs, u, 25, npairs, 0);
        dc_sampler_free(s);
    }

    /* Negative control for the cycle check: an i.i.d. uniform-within-class stream (power q = 0) repeats
     * samples of the small classes inside a cycle. */
    dc_sampler *s = make(make_cfg(DC_SAMPLER_POWER, 0.0, 4, 0), labels, N, C_LT, 41, B, 0);
    REQUIRE(dc_sampler_set_epoch(s, 0) == DC_OK);
    int64_t len;
    const int64_t *st = dc_sampler_epoch_stream(s, &len);
    EXPECT(!check_cycles(st, len, labels, N, C_LT));
    dc_sampler_free(s);
    free(labels);
}

/* ---- progressive: schedule and cycles ------------------------------------------------------------------ */

static void test_progressive_schedule(void) {
    int64_t N;
    int32_t *labels = make_lt_labels(&N);
    dc_sampler *s = make(make_cfg(DC_SAMPLER_PROGRESSIVE, 0, 4, 10), labels, N, C_LT, 3, 48, 0);
    /* lams = linspace(0, 1, 10), lambda(t) = lams[clip(t, 0, 9)]. */
    for (int t = 0; t < 15; t++) {
        double expect = (t < 9 ? t : 9) / 9.0;
        EXPECTF(fabs(dc_sampler_pb_lambda(s, t) - expect) < 1e-15, "t=%d", t);
    }
    double p[C_LT];
    dc_sampler_class_probs(s, 0, p);
    for (int c = 0; c < C_LT; c++) EXPECT(fabs(p[c] - (double)lt_counts[c] / (double)N) < 1e-15);
    dc_sampler_class_probs(s, 12, p);
    for (int c = 0; c < C_LT; c++) EXPECT(fabs(p[c] - 0.1) < 1e-15);
    /* Draws inside a class follow its cycle. */
    for (int e = 0; e < 10; e += 3) {
        REQUIRE(dc_sampler_set_epoch(s, e) == DC_OK);
        int64_t len;
        const int64_t *st = dc_sampler_epoch_stream(s, &len);
        EXPECTF(check_cycles(st, len, labels, N, C_LT), "progressive epoch %d breaks a class cycle", e);
    }
    dc_sampler_free(s);

    /* pb_epochs <= 0 takes num_epochs (90 here); T = 1 is linspace(0, 1, 1) = [0]: instance-balanced mass. */
    s = make(make_cfg(DC_SAMPLER_PROGRESSIVE, 0, 4, 0), labels, N, C_LT, 3, 48, 0);
    EXPECT(fabs(dc_sampler_pb_lambda(s, 45) - 45.0 / 89.0) < 1e-15);
    dc_sampler_free(s);
    s = make(make_cfg(DC_SAMPLER_PROGRESSIVE, 0, 4, 1), labels, N, C_LT, 3, 48, 0);
    EXPECT(dc_sampler_pb_lambda(s, 0) == 0.0 && dc_sampler_pb_lambda(s, 5) == 0.0);
    dc_sampler_free(s);
    free(labels);
}

/* ---- determinism: epochs in any order ------------------------------------------------------------------ */

static void test_epoch_purity(void) {
    int64_t N;
    int32_t *labels = make_lt_labels(&N);
    for (int type = DC_SAMPLER_INSTANCE; type <= DC_SAMPLER_PROGRESSIVE; type++) {
        dc_sampler *s = make(make_cfg((dc_sampler_type)type, 0.5, 4, 10), labels, N, C_LT, 77, 48, 1);
        int64_t len, len2;
        REQUIRE(dc_sampler_set_epoch(s, 3) == DC_OK);
        const int64_t *st = dc_sampler_epoch_stream(s, &len);
        int64_t *e3 = malloc((size_t)len * sizeof *e3);
        memcpy(e3, st, (size_t)len * sizeof *e3);
        REQUIRE(dc_sampler_set_epoch(s, 5) == DC_OK);
        EXPECTF(memcmp(e3, dc_sampler_epoch_stream(s, &len2), (size_t)len * sizeof *e3) != 0,
                "type %d: epochs 3 and 5 are equal", type);
        REQUIRE(dc_sampler_set_epoch(s, 3) == DC_OK);
        st = dc_sampler_epoch_stream(s, &len2);
        EXPECTF(len2 == len && memcmp(e3, st, (size_t)len * sizeof *e3) == 0,
                "type %d: epoch 3 differs after visiting epoch 5", type);
        EXPECT(dc_sampler_current_epoch(s) == 3);
        free(e3);
        dc_sampler_free(s);
    }
    free(labels);
}

/* ---- bad inputs ---------------------------------------------------------------------------------------- */

static int fails_with(dc_sampler_cfg cfg, const int32_t *labels, int64_t N, int C, int B, int R,
                      const char *a, const char *b) {
    dc_sampler *s = (dc_sampler *)0x1;
    dc_clear_error();
    int rc = dc_sampler_create(&cfg, labels, N, C, 1, 90, B, R, 0, &s);
    const char *msg = dc_last_error();
    int ok = rc == DC_FAIL && s == NULL && strstr(msg, a) && (!b || strstr(msg, b));
    if (!ok)
        fprintf(stderr, "  expected an error with '%s' / '%s', got rc %d: '%s'\n", a, b ? b : "", rc, msg);
    return ok;
}

static void test_bad_inputs(void) {
    /* Class 3 of 5 has no sample. */
    int32_t labels[40];
    for (int i = 0; i < 40; i++) labels[i] = (int32_t)(i % 4 == 3 ? 4 : i % 4);
    EXPECT(
        fails_with(make_cfg(DC_SAMPLER_CLASS_AWARE, 0, 4, 0), labels, 40, 5, 8, 1, "class 3", "no training"));
    EXPECT(fails_with(make_cfg(DC_SAMPLER_POWER, 0.5, 4, 0), labels, 40, 5, 8, 1, "class 3", "power"));
    EXPECT(fails_with(make_cfg(DC_SAMPLER_POWER, 0.0, 4, 0), labels, 40, 5, 8, 1, "class 3", NULL));
    EXPECT(
        fails_with(make_cfg(DC_SAMPLER_PROGRESSIVE, 0, 4, 10), labels, 40, 5, 8, 1, "class 3", "progress"));
    /* Instance and power q = 1 do not need every class; the empty class is never drawn. */
    for (int type = 0; type < 2; type++) {
        dc_sampler_cfg cfg = make_cfg(type ? DC_SAMPLER_POWER : DC_SAMPLER_INSTANCE, 1.0, 4, 0);
        dc_sampler *s = NULL;
        EXPECT(dc_sampler_create(&cfg, labels, 40, 5, 1, 90, 8, 1, 0, &s) == DC_OK);
        if (!s) continue;
        int bad = 0;
        for (int e = 0; e < 20; e++) {
            dc_sampler_set_epoch(s, e);
            int64_t len;
            const int64_t *st = dc_sampler_epoch_stream(s, &len);
            for (int64_t p = 0; p < len; p++) bad += labels[st[p]] == 3;
        }
        EXPECT(bad == 0);
        dc_sampler_free(s);
    }
    dc_sampler_cfg inst = make_cfg(DC_SAMPLER_INSTANCE, 1, 4, 0);
    EXPECT(fails_with(inst, labels, 40, 5, 41, 1, "training_opt.batch_size",
                      "batch_size 41 exceeds the 40 training"));
    EXPECT(fails_with(inst, labels, 40, 5, 0, 1, "training_opt.batch_size", NULL));
    EXPECT(fails_with(make_cfg(DC_SAMPLER_POWER, 1.5, 4, 0), labels, 40, 5, 8, 1, "training_opt.sampler.q",
                      "1.5"));
    EXPECT(fails_with(make_cfg(DC_SAMPLER_POWER, -0.1, 4, 0), labels, 40, 5, 8, 1, "training_opt.sampler.q",
                      NULL));
    EXPECT(fails_with(make_cfg(DC_SAMPLER_POWER, NAN, 4, 0), labels, 40, 5, 8, 1, "training_opt.sampler.q",
                      NULL));
    EXPECT(fails_with(make_cfg(DC_SAMPLER_CLASS_AWARE, 0, 0, 0), labels, 40, 4, 8, 1,
                      "training_opt.sampler.num_samples_cls", NULL));
    EXPECT(
        fails_with(inst, labels, 40, 4, 8, 1, "training_opt.num_classes", "label 4")); /* label 4 >= C = 4 */
    EXPECT(fails_with(inst, labels, 40, 0, 8, 1, "training_opt.num_classes", NULL));
    EXPECT(fails_with(inst, labels, 0, 5, 8, 1, "empty", NULL));
    /* Progressive with neither pb_epochs nor num_epochs. */
    {
        dc_sampler_cfg cfg = make_cfg(DC_SAMPLER_PROGRESSIVE, 0, 4, 0);
        dc_sampler *s = NULL;
        EXPECT(dc_sampler_create(&cfg, labels, 40, 4, 1, 0, 8, 1, 0, &s) == DC_FAIL &&
               strstr(dc_last_error(), "training_opt.sampler.pb_epochs"));
    }
    /* Reading before an epoch is selected, and outside the epoch. */
    {
        dc_sampler *s = make(inst, labels, 40, 5, 1, 8, 0);
        int64_t out[8];
        EXPECT(dc_sampler_global_batch(s, 0, out) == DC_FAIL && strstr(dc_last_error(), "set_epoch"));
        REQUIRE(dc_sampler_set_epoch(s, 0) == DC_OK);
        EXPECT(dc_sampler_global_batch(s, 5, out) == DC_FAIL && strstr(dc_last_error(), "step 5"));
        EXPECT(dc_sampler_global_batch(s, 4, out) == DC_OK);
        EXPECT(dc_sampler_set_epoch(s, -1) == DC_FAIL);
        dc_sampler_free(s);
    }
}

int main(void) {
    test_chi2_math();
    test_class_frequencies();
    test_instance_level_fit();
    test_instance_permutation();
    test_class_aware_structure();
    test_progressive_schedule();
    test_epoch_purity();
    test_bad_inputs();
    return tu_finish("test_samplers");
}
