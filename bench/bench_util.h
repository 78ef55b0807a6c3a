/*
 * bench_util.h: small helpers shared by the benchmark programs.
 */
#ifndef DC_BENCH_UTIL_H
#define DC_BENCH_UTIL_H

/* The median of v[0..n) (sorts v in place; n is small: a few dozen timings). */
static inline double bench_median(double *v, int n) {
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && v[j - 1] > v[j]; j--) {
            double t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

#endif
