/*
 * batchnorm.c: batch normalisation over CNHW activations (layers.h), training and eval mode, with an optional
 * fused ReLU and an optional cross-rank reduction of the statistics (sync-BN).
 *
 * In CNHW every channel is one contiguous row of M = N*H*W floats, so each channel is an independent problem:
 * the loops are parallel over channels and each channel's reductions run serially inside one thread, in
 * double, in a fixed order (eight interleaved partial sums, combined pairwise). The result is therefore
 * bitwise the same for any thread count, not only for a fixed one.
 *
 * Training statistics, two passes (the numerically careful "compute the mean first" scheme):
 *
 *   pass 1   s1[c] = sum_i x_ci,  count = M                 -> reduce([s1, count])   -> mu = s1 / M_total
 *   pass 2   s2[c] = sum_i (x_ci - mu_c)^2                   -> reduce([s2])          -> var = s2 / M_total
 *
 * The one-pass form var = E[x^2] - E[x]^2 loses every digit when |mean| >> std (a float32 activation with
 * mean 1000 and std 1 keeps ~7 digits of x^2 ~ 1e6, so the variance would be noise); summing squared
 * deviations from the global mean does not. The price is one extra small reduction per layer with sync-BN
 * (two MPI_Allreduce calls of C+1 and C doubles instead of one), which is latency, not bandwidth, and the
 * second pass re-reads x, which is cheap next to the convolution that produced it. The element count travels
 * with the first reduction so that M_total is known when ranks hold different batch sizes.
 *
 * Backward (dxhat = dy*gamma, sums over the global batch when reduced):
 *
 *   dx = rstd/M * (M*dxhat - sum(dxhat) - xhat*sum(dxhat*xhat))
 *      = a*dy + b*(x - mu) + k   with  a = gamma*rstd,  b = -gamma*rstd^3*S2/M,  k = -gamma*rstd*S1/M,
 *   S1 = sum(dy), S2 = sum(dy*(x - mu)),
 *
 * so one reduction of [S1, S2] (2C doubles) plus the global element count gives everything; the per-element
 * pass is then a single fused multiply-add chain. dgamma and dbeta receive the LOCAL sums (before the
 * reduction): the trainer allreduces parameter gradients itself, and adding global sums here would count
 * every rank's contribution world_size times. Backward cannot see the forward's M_total (no state is kept
 * between the calls), so with a reduce hook it sends the local count in one more 1-double reduction.
 *
 * With relu != 0 the forward writes max(y, 0) and the backward first masks dy where the forward output y is
 * <= 0, which is exactly the gradient of relu(bn(x)) (the derivative at 0 is taken as 0, as PyTorch does).
 *
 * Degenerate input: with M_total == 1 the unbiased variance is undefined (PyTorch refuses to train such a
 * layer); here the running variance is then updated with the biased one (0) instead of dividing by zero.
 */
#include "layers.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* Below this many elements the OpenMP fork/join costs more than the work. */
#define BN_PAR_MIN 32768

/* ---- fixed-order double reductions over one channel row ------------------------------------------------ */
/* Eight interleaved partial sums give the compiler independent chains to vectorise (float -> double
 * conversion plus add), and the combination order is fixed, so the value does not depend on anything but
 * the data. */
#define LANES 8

static double combine_lanes(const double acc[LANES]) {
    return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

/* sum_i x_i */
static double row_sum(const float *x, int64_t n) {
    double acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) acc[j] += (double)x[i + j];
    for (int j = 0; i < n; i++, j++) acc[j] += (double)x[i];
    return combine_lanes(acc);
}

/* sum_i (x_i - mu)^2 */
static double row_sum_sq_dev(const float *x, int64_t n, double mu) {
    double acc[LANES] = {0};
    int64_t i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int j = 0; j < LANES; j++) {
            double d = (double)x[i + j] - mu;
            acc[j] += d * d;
        }
    for (int j = 0; i < n; i++, j++) {
        double d = (double)x[i] - mu;
        acc[j] += d * d;
    }
    return combine_lanes(acc);
}

/* g if v > 0, else +0.0, by masking the bits: GCC if-converts and vectorises this form (not the ?: on a
 * double), and unlike g * (v > 0) it gives 0, not NaN, where a masked-out g is inf or NaN. */
static inline float keep_if_positive(float g, float v) {
    uint32_t bits, keep = -(uint32_t)(v > 0.0f);
    memcpy(&bits, &g, sizeof bits);
    bits &= keep;
    memcpy(&g, &bits, sizeof g);
    return g;
}

/* s_dy = sum_i g_i, s_dyx = sum_i g_i * (x_i - mu), with g = dy, or dy masked by (y > 0) when y != NULL. */
static void row_grad_sums(const float *x, const float *y, const float *dy, int64_t n, float mu, double *s_dy,
                          double *s_dyx) {
    double a1[LANES] = {0}, a2[LANES] = {0};
    int64_t i = 0;
    if (y) {
        for (; i + LANES <= n; i += LANES)
            for (int j = 0; j < LANES; j++) {
                double g = (double)keep_if_positive(dy[i + j], y[i + j]);
                a1[j] += g;
                a2[j] += g * (double)(x[i + j] - mu);
            }
        for (int j = 0; i < n; i++, j++) {
            double g = (double)keep_if_positive(dy[i], y[i]);
            a1[j] += g;
            a2[j] += g * (double)(x[i] - mu);
        }
    } else {
        for (; i + LANES <= n; i += LANES)
            for (int j = 0; j < LANES; j++) {
                double g = (double)dy[i + j];
                a1[j] += g;
                a2[j] += g * (double)(x[i + j] - mu);
            }
        for (int j = 0; i < n; i++, j++) {
            double g = (double)dy[i];
            a1[j] += g;
            a2[j] += g * (double)(x[i] - mu);
        }
    }
    *s_dy = combine_lanes(a1);
    *s_dyx = combine_lanes(a2);
}

/* y = (x - mu)*scale + shift, optionally clamped at 0. Subtracting the mean first (instead of the cheaper
 * x*scale + (shift - mu*scale)) keeps full precision when |mu| >> std. */
static void row_affine(const float *x, float *y, int64_t n, float mu, float scale, float shift, int relu) {
    if (relu) {
        for (int64_t i = 0; i < n; i++) {
            float v = (x[i] - mu) * scale + shift;
            y[i] = v < 0.0f ? 0.0f : v; /* NaN passes through, as torch.relu */
        }
    } else {
        for (int64_t i = 0; i < n; i++) y[i] = (x[i] - mu) * scale + shift;
    }
}

static int has_hook(const dc_bn_reduce *reduce) {
    return reduce != NULL && reduce->fn != NULL;
}

/* ---- training forward ---------------------------------------------------------------------------------- */
void dc_bn_forward_train(int C, int64_t M, const float *x, const float *gamma, const float *beta, float *y,
                         float *save_mean, float *save_rstd, float *running_mean, float *running_var,
                         float momentum, float eps, int relu, const dc_bn_reduce *reduce, double *scratch) {
    if (C <= 0) return;
    const int par = (int64_t)C * M >= BN_PAR_MIN;
    /* scratch layout: pass 1 uses [s1 (C), count (1)], pass 2 reuses [s2 (C)]; C + 1 <= 2C for C >= 1. */
    double *sums = scratch;

    /* pass 1: per-channel sums, then the (global) mean */
#pragma omp parallel for schedule(static) if (par)
    for (int c = 0; c < C; c++) sums[c] = row_sum(x + (int64_t)c * M, M);
    sums[C] = (double)M;
    if (has_hook(reduce)) reduce->fn(sums, C + 1, reduce->ctx);
    const double m_total = sums[C];
    const double inv_m = m_total > 0 ? 1.0 / m_total : 0.0;
    for (int c = 0; c < C; c++) save_mean[c] = (float)(sums[c] * inv_m);

        /* pass 2: squared deviations from the rounded mean that backward will also use, so that forward and
         * backward normalise with the same numbers. */
#pragma omp parallel for schedule(static) if (par)
    for (int c = 0; c < C; c++) sums[c] = row_sum_sq_dev(x + (int64_t)c * M, M, (double)save_mean[c]);
    if (has_hook(reduce)) reduce->fn(sums, C, reduce->ctx);

    /* statistics and running averages, in double, serially (C values) */
    const double unbias = m_total > 1 ? m_total / (m_total - 1.0) : 1.0;
    const double mom = momentum;
    for (int c = 0; c < C; c++) {
        double var = sums[c] * inv_m;
        double rstd = 1.0 / sqrt(var + (double)eps);
        save_rstd[c] = (float)rstd;
        /* the mean actually removed is save_mean: var above is the variance about it, and the mean update
         * uses the same value */
        running_mean[c] = (float)((1.0 - mom) * (double)running_mean[c] + mom * (double)save_mean[c]);
        running_var[c] = (float)((1.0 - mom) * (double)running_var[c] + mom * var * unbias);
    }

    /* pass 3: normalise */
#pragma omp parallel for schedule(static) if (par)
    for (int c = 0; c < C; c++) {
        float scale = (float)((double)gamma[c] * (double)save_rstd[c]);
        row_affine(x + (int64_t)c * M, y + (int64_t)c * M, M, save_mean[c], scale, beta[c], relu);
    }
}

/* ---- eval forward -------------------------------------------------------------------------------------- */
void dc_bn_forward_eval(int C, int64_t M, const float *x, const float *gamma, const float *beta,
                        const float *running_mean, const float *running_var, float eps, int relu, float *y) {
    if (C <= 0) return;
#pragma omp parallel for schedule(static) if ((int64_t)C * M >= BN_PAR_MIN)
    for (int c = 0; c < C; c++) {
        float scale = (float)((double)gamma[c] / sqrt((double)running_var[c] + (double)eps));
        row_affine(x + (int64_t)c * M, y + (int64_t)c * M, M, running_mean[c], scale, beta[c], relu);
    }
}

/* ---- backward ------------------------------------------------------------------------------------------ */
void dc_bn_backward(int C, int64_t M, const float *x, const float *y, const float *dy, const float *gamma,
                    const float *save_mean, const float *save_rstd, int relu, float *dx, float *dgamma,
                    float *dbeta, const dc_bn_reduce *reduce, double *scratch) {
    if (C <= 0) return;
    const int par = (int64_t)C * M >= BN_PAR_MIN;
    const float *mask = relu ? y : NULL;
    double *s_dy = scratch, *s_dyx = scratch + C; /* [S1 (C), S2 (C)] contiguous for one reduction */

#pragma omp parallel for schedule(static) if (par)
    for (int c = 0; c < C; c++) {
        int64_t off = (int64_t)c * M;
        row_grad_sums(x + off, mask ? mask + off : NULL, dy + off, M, save_mean[c], &s_dy[c], &s_dyx[c]);
    }

    /* parameter gradients from the local batch: dbeta = sum(dy), dgamma = sum(dy*xhat) = rstd*S2 */
    for (int c = 0; c < C; c++) {
        dbeta[c] += (float)s_dy[c];
        dgamma[c] += (float)((double)save_rstd[c] * s_dyx[c]);
    }

    double m_total = (double)M;
    if (has_hook(reduce)) {
        reduce->fn(scratch, 2 * C, reduce->ctx);
        reduce->fn(&m_total, 1, reduce->ctx);
    }
    const double inv_m = m_total > 0 ? 1.0 / m_total : 0.0;

    /* dx = a*g + b*(x - mu) + k with g the (masked) dy; dx may alias dy: element i reads only dy[i] */
#pragma omp parallel for schedule(static) if (par)
    for (int c = 0; c < C; c++) {
        int64_t off = (int64_t)c * M;
        double rstd = save_rstd[c], gr = (double)gamma[c] * rstd;
        float a = (float)gr;
        float b = (float)(-gr * rstd * rstd * s_dyx[c] * inv_m);
        float k = (float)(-gr * s_dy[c] * inv_m);
        float mu = save_mean[c];
        const float *xr = x + off, *dyr = dy + off;
        float *dxr = dx + off;
        if (mask) {
            const float *yr = y + off;
            for (int64_t i = 0; i < M; i++) {
                float g = keep_if_positive(dyr[i], yr[i]);
                dxr[i] = a * g + b * (xr[i] - mu) + k;
            }
        } else {
            for (int64_t i = 0; i < M; i++) dxr[i] = a * dyr[i] + b * (xr[i] - mu) + k;
        }
    }
}
