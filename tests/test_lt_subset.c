/*
 * test_lt_subset.c: the long-tailed class profiles, the "first n_c per class" selection and the carved
 * balanced validation split (datasets/lt_subset.c).
 *
 * Oracles: the published CIFAR-10-LT / CIFAR-100-LT training-set sizes (exact integers), an independent
 * long-double evaluation of the profile for other class counts, a naive re-implementation of the selection,
 * and for the carve: disjointness, balance, determinism, per-class independence and a uniformity test over
 * many seeds.
 */
#include "datasets/dataset.h"

#include "core/check.h"
#include "testutil.h"

#include <math.h>
#include <stdint.h>

static int64_t sum64(const int64_t *a, int n) {
    int64_t s = 0;
    for (int i = 0; i < n; i++) s += a[i];
    return s;
}

static void test_published_sizes(void) {
    const double rs[4] = {10, 50, 100, 200};
    const int64_t c10[4] = {20431, 13996, 12406, 11203};
    const int64_t c100[4] = {19573, 12608, 10847, 9502};
    int64_t counts[100];
    for (int k = 0; k < 4; k++) {
        REQUIRE(dc_lt_profile(DC_IMB_EXP, 10, 5000, rs[k], 0.5, counts) == DC_OK);
        EXPECTF(sum64(counts, 10) == c10[k], "CIFAR-10-LT r=%g: %lld", rs[k], (long long)sum64(counts, 10));
        EXPECT(counts[0] == 5000);
        EXPECTF(counts[9] == (int64_t)(5000 / rs[k]), "r=%g last class %lld", rs[k], (long long)counts[9]);
        REQUIRE(dc_lt_profile(DC_IMB_EXP, 100, 500, rs[k], 0.5, counts) == DC_OK);
        EXPECTF(sum64(counts, 100) == c100[k], "CIFAR-100-LT r=%g: %lld", rs[k],
                (long long)sum64(counts, 100));
        EXPECT(counts[0] == 500);
    }
    /* CIFAR-10-LT r=100, class by class (the published list's per-class counts) */
    const int64_t r100[10] = {5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50};
    REQUIRE(dc_lt_profile(DC_IMB_EXP, 10, 5000, 100, 0.5, counts) == DC_OK);
    for (int c = 0; c < 10; c++) EXPECTF(counts[c] == r100[c], "class %d: %lld", c, (long long)counts[c]);
    /* Fashion-MNIST r = 500: 6000 down to 12 */
    const int64_t f500[10] = {6000, 3007, 1507, 755, 378, 189, 95, 47, 23, 12};
    REQUIRE(dc_lt_profile(DC_IMB_EXP, 10, 6000, 500, 0.5, counts) == DC_OK);
    for (int c = 0; c < 10; c++)
        EXPECTF(counts[c] == f500[c], "fashion r=500 class %d: %lld", c, (long long)counts[c]);
}

/* Any C: compare with floor(n_max * r^(-c/(C-1))) in long double; the two may only differ where the exact
 * value is within rounding of an integer (where "floor" itself is ill-conditioned). */
static void test_other_class_counts(void) {
    const int Cs[] = {2, 3, 7, 37, 365, 1000, 8142};
    const double rs[] = {1, 1.5, 10, 99, 256, 500};
    const int64_t nmax[] = {1000, 1280, 4980};
    static int64_t counts[8142];
    int compared = 0;
    for (size_t a = 0; a < sizeof Cs / sizeof *Cs; a++)
        for (size_t b = 0; b < sizeof rs / sizeof *rs; b++)
            for (size_t m = 0; m < sizeof nmax / sizeof *nmax; m++) {
                int C = Cs[a];
                REQUIRE(dc_lt_profile(DC_IMB_EXP, C, nmax[m], rs[b], 0.5, counts) == DC_OK);
                EXPECT(counts[0] == nmax[m]);
                for (int c = 0; c < C; c++) {
                    long double exact =
                        (long double)nmax[m] * powl((long double)rs[b], -(long double)c / (C - 1));
                    long double fl = floorl(exact);
                    int near_integer = fabsl(exact - roundl(exact)) < 1e-9L * exact;
                    if (!near_integer) {
                        EXPECTF(counts[c] == (int64_t)fl, "C=%d r=%g n_max=%lld class %d: %lld vs %.6Lf", C,
                                rs[b], (long long)nmax[m], c, (long long)counts[c], exact);
                        compared++;
                    } else {
                        EXPECT(llabs(counts[c] - (int64_t)roundl(exact)) <= 1);
                    }
                    if (c > 0) EXPECT(counts[c] <= counts[c - 1]);
                }
            }
    EXPECT(compared > 30000);
    /* C = 1: the single class keeps everything */
    REQUIRE(dc_lt_profile(DC_IMB_EXP, 1, 77, 100, 0.5, counts) == DC_OK);
    EXPECT(counts[0] == 77);
    /* r = 1: balanced */
    REQUIRE(dc_lt_profile(DC_IMB_EXP, 5, 40, 1, 0.5, counts) == DC_OK);
    for (int c = 0; c < 5; c++) EXPECT(counts[c] == 40);
}

static void test_step_and_errors(void) {
    int64_t counts[100];
    REQUIRE(dc_lt_profile(DC_IMB_STEP, 10, 5000, 10, 0.5, counts) == DC_OK);
    for (int c = 0; c < 10; c++) EXPECT(counts[c] == (c < 5 ? 5000 : 500));
    REQUIRE(dc_lt_profile(DC_IMB_STEP, 10, 5000, 100, 0.3, counts) == DC_OK);
    for (int c = 0; c < 10; c++) EXPECT(counts[c] == (c < 7 ? 5000 : 50));
    REQUIRE(dc_lt_profile(DC_IMB_STEP, 100, 500, 10, 0.29, counts) == DC_OK); /* 29 minority classes */
    int minority = 0;
    for (int c = 0; c < 100; c++) minority += counts[c] == 50;
    EXPECTF(minority == 29, "minority %d", minority);
    REQUIRE(dc_lt_profile(DC_IMB_NONE, 4, 9, 0, 0, counts) == DC_OK);
    EXPECT(counts[3] == 9);

    const double bad_r[] = {0.5, 0.0, -3, NAN, INFINITY};
    for (size_t k = 0; k < sizeof bad_r / sizeof *bad_r; k++) {
        dc_clear_error();
        EXPECT(dc_lt_profile(DC_IMB_EXP, 10, 5000, bad_r[k], 0.5, counts) == DC_FAIL);
        EXPECTF(strstr(dc_last_error(), "imb_factor") != NULL, "r=%g: %s", bad_r[k], dc_last_error());
        EXPECT(dc_lt_profile(DC_IMB_STEP, 10, 5000, bad_r[k], 0.5, counts) == DC_FAIL);
    }
    EXPECT(dc_lt_profile(DC_IMB_STEP, 10, 5000, 10, 1.5, counts) == DC_FAIL);
    EXPECT(strstr(dc_last_error(), "step_minor_frac") != NULL);
    /* r > n_max leaves a class with nothing */
    EXPECT(dc_lt_profile(DC_IMB_EXP, 10, 50, 100, 0.5, counts) == DC_FAIL);
    EXPECTF(strstr(dc_last_error(), "0 samples") != NULL, "%s", dc_last_error());
    EXPECT(dc_lt_profile(DC_IMB_EXP, 0, 50, 10, 0.5, counts) == DC_FAIL);
}

/* The selection against a naive version: for each i in order, keep it while its class has room. */
static void test_select(void) {
    enum { N = 3000, C = 7 };
    static int32_t labels[N];
    static int64_t sel[N];
    uint64_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        labels[i] = (int32_t)((x >> 33) % C);
    }
    int64_t keep[C] = {400, 300, 200, 100, 50, 10, 1000}; /* class 6 asks for more than it has */
    int64_t n_sel;
    int short_classes;
    REQUIRE(dc_lt_select(labels, N, C, keep, sel, &n_sel, &short_classes) == DC_OK);
    int64_t taken[C] = {0};
    int64_t m = 0;
    int ok = 1;
    for (int i = 0; i < N; i++)
        if (taken[labels[i]] < keep[labels[i]]) {
            taken[labels[i]]++;
            ok &= m < n_sel && sel[m] == i;
            m++;
        }
    EXPECT(ok);
    EXPECT(m == n_sel);
    EXPECT(short_classes == 1);
    labels[5] = C; /* out of range */
    EXPECT(dc_lt_select(labels, N, C, keep, sel, &n_sel, NULL) == DC_FAIL);
}

static void test_carve(void) {
    /* An LT set: class c has counts[c] samples, interleaved. */
    enum { C = 10 };
    int64_t counts[C];
    REQUIRE(dc_lt_profile(DC_IMB_EXP, C, 500, 100, 0.5, counts) == DC_OK); /* 500 .. 5 */
    int64_t n = sum64(counts, C);
    int32_t *labels = malloc(sizeof(int32_t) * (size_t)n);
    int64_t *tr = malloc(sizeof(int64_t) * (size_t)n), *va = malloc(sizeof(int64_t) * (size_t)n);
    int64_t *tr2 = malloc(sizeof(int64_t) * (size_t)n), *va2 = malloc(sizeof(int64_t) * (size_t)n);
    int64_t left[C];
    memcpy(left, counts, sizeof left);
    for (int64_t i = 0, c = 0; i < n; c = (c + 1) % C)
        if (left[c] > 0) labels[i++] = (int32_t)c, left[c]--;
    const int vpc = 20;
    int64_t nt, nv, nt2, nv2;
    int reduced;
    REQUIRE(dc_carve_val(labels, n, C, vpc, 42, tr, &nt, va, &nv, &reduced) == DC_OK);
    EXPECT(nt + nv == n);
    /* disjoint and covering: the merge of two ascending lists is 0..n-1 */
    int64_t a = 0, b = 0, ok = 1;
    for (int64_t i = 0; i < n; i++) {
        if (a < nt && tr[a] == i)
            a++;
        else if (b < nv && va[b] == i)
            b++;
        else
            ok = 0;
    }
    EXPECT(ok && a == nt && b == nv);
    int64_t vcount[C] = {0}, tcount[C] = {0};
    for (int64_t k = 0; k < nv; k++) vcount[labels[va[k]]]++;
    for (int64_t k = 0; k < nt; k++) tcount[labels[tr[k]]]++;
    int expect_reduced = 0;
    for (int c = 0; c < C; c++) {
        int64_t want = counts[c] - 1 < vpc ? counts[c] - 1 : vpc;
        expect_reduced += counts[c] <= vpc;
        EXPECTF(vcount[c] == want, "class %d (n=%lld): %lld in val", c, (long long)counts[c],
                (long long)vcount[c]);
        EXPECT(tcount[c] >= 1);
    }
    EXPECT(reduced == expect_reduced && reduced > 0);
    /* deterministic; another seed gives another split */
    REQUIRE(dc_carve_val(labels, n, C, vpc, 42, tr2, &nt2, va2, &nv2, NULL) == DC_OK);
    EXPECT(nv2 == nv && memcmp(va, va2, sizeof(int64_t) * (size_t)nv) == 0);
    REQUIRE(dc_carve_val(labels, n, C, vpc, 43, tr2, &nt2, va2, &nv2, NULL) == DC_OK);
    EXPECT(nv2 == nv && memcmp(va, va2, sizeof(int64_t) * (size_t)nv) != 0);
    /* val_per_class = 0: everything is train */
    REQUIRE(dc_carve_val(labels, n, C, 0, 42, tr2, &nt2, va2, &nv2, &reduced) == DC_OK);
    EXPECT(nt2 == n && nv2 == 0 && reduced == 0);
    EXPECT(dc_carve_val(labels, n, C, -1, 42, tr2, &nt2, va2, &nv2, NULL) == DC_FAIL);
    EXPECT(strstr(dc_last_error(), "val_per_class") != NULL);
    free(labels);
    free(tr);
    free(va);
    free(tr2);
    free(va2);
}

/* Class c's choice depends only on (seed, c) and c's own samples: adding samples of another class, and
 * moving c's samples around in the file, leaves the chosen ranks within class c unchanged. */
static void test_carve_class_independence(void) {
    enum { N1 = 60 };
    int32_t l1[N1], l2[2 * N1];
    int64_t tr[2 * N1], va[2 * N1], nt, nv;
    for (int i = 0; i < N1; i++) l1[i] = i % 2; /* 30 of class 0, 30 of class 1 */
    REQUIRE(dc_carve_val(l1, N1, 3, 5, 9, tr, &nt, va, &nv, NULL) == DC_OK);
    int rank1[5], k1 = 0;
    for (int64_t k = 0; k < nv; k++)
        if (l1[va[k]] == 0) rank1[k1++] = (int)(va[k] / 2); /* rank of the sample inside class 0 */
    /* now class 0 is in the second half, class 1 and 2 samples are spread around it */
    for (int i = 0; i < N1; i++) l2[i] = (i % 3 == 0) ? 2 : 1;
    for (int i = 0; i < N1 / 2; i++) l2[N1 + i] = 0;
    for (int i = N1 + N1 / 2; i < 2 * N1; i++) l2[i] = 2;
    REQUIRE(dc_carve_val(l2, 2 * N1, 3, 5, 9, tr, &nt, va, &nv, NULL) == DC_OK);
    int k2 = 0, same = 1;
    for (int64_t k = 0; k < nv; k++)
        if (l2[va[k]] == 0) same &= k2 < 5 && rank1[k2] == (int)(va[k] - N1), k2++;
    EXPECT(k1 == 5 && k2 == 5 && same);
}

/* Uniformity: over many seeds every sample of a class of 10 is chosen (k = 3) with probability 0.3. */
static void test_carve_uniform(void) {
    enum { N = 10, K = 3, SEEDS = 20000 };
    int32_t labels[N] = {0};
    int64_t tr[N], va[N], nt, nv;
    int hits[N] = {0};
    for (int s = 0; s < SEEDS; s++) {
        REQUIRE(dc_carve_val(labels, N, 1, K, (uint64_t)s, tr, &nt, va, &nv, NULL) == DC_OK);
        for (int64_t k = 0; k < nv; k++) hits[va[k]]++;
    }
    double mean = SEEDS * (double)K / N, sd = sqrt(SEEDS * 0.3 * 0.7);
    double chi2 = 0;
    for (int i = 0; i < N; i++) {
        EXPECTF(fabs(hits[i] - mean) < 5 * sd, "sample %d chosen %d times (expected %.0f)", i, hits[i], mean);
        chi2 += (hits[i] - mean) * (hits[i] - mean) / mean;
    }
    /* 9 degrees of freedom (not independent cells, so only a loose bound): p(chi2 > 40) < 1e-5 */
    EXPECTF(chi2 < 40, "chi2 %.1f", chi2);
}

int main(void) {
    test_published_sizes();
    test_other_class_counts();
    test_step_and_errors();
    test_select();
    test_carve();
    test_carve_class_independence();
    test_carve_uniform();
    return tu_finish("test_lt_subset");
}
