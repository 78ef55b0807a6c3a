/*
 * ncm.c: the nearest-class-mean head (head.h), fitted from class statistics that ranks can sum.
 *
 * The reference (classifier-balancing, models/KNNClassifier.py and get_knncentroids) holds every training
 * feature in RAM; here each rank only adds its shard into double sums:
 *
 *   pass 1 (cl2n only)   mean_buf = [ sum_i x_i | N ]                 -> mu = sum / N
 *   pass 2               sum_j = sum_{i: y_i = j} t(x_i),  count_j    -> c_j = sum_j / count_j
 *
 * with t(x) = x (un), x / ||x|| (l2n) or (x - mu) / ||x - mu|| (cl2n), computed in double from the float
 * features and the float mu (the very mu the queries are centred with). Both buffers are plain double arrays:
 * the lead sums them over ranks (MPI_Allreduce) between accumulate and fit. Centroids are not re-normalised.
 *
 * Logits without transforming the queries into scratch memory (dc_head_logits takes none): with
 * a_nj = x_n . c_j from one GEMM, r_n = ||x_n - mu|| (mu = 0 for l2n) and, per class, ||c_j||^2 and c_j . mu,
 *
 *   t(x_n) . c_j       = (a_nj - c_j . mu) / r_n              (l2n, cl2n; = a_nj for un)
 *   ||t(x_n)||^2       = 1 (l2n, cl2n; 0 for a zero vector),  ||x_n||^2 (un)
 *   l2 :  z_nj = -(||t||^2 + ||c_j||^2 - 2 t . c_j)           (the reference's AA + BB - 2AB, negated)
 *   cos:  z_nj = t . c_j / D                                  (the reference divides by feat_dim)
 *
 * evaluated per element in double. Every sum runs in a fixed order (columns split over threads, each column
 * summed over rows in order), so results do not depend on the thread count.
 */
#include "head.h"

#include "core/check.h"
#include "core/layers.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define ROW_BLOCK 256 /* rows whose norms are computed before their columns are added */
#define COL_BLOCK 64

const char *dc_ncm_feat_name(dc_ncm_feat f) {
    switch (f) {
    case DC_NCM_UN:
        return "un";
    case DC_NCM_L2N:
        return "l2n";
    case DC_NCM_CL2N:
        return "cl2n";
    }
    return "unknown";
}

const char *dc_ncm_dist_name(dc_ncm_dist d) {
    switch (d) {
    case DC_NCM_DIST_L2:
        return "l2";
    case DC_NCM_DIST_COS:
        return "cos";
    }
    return "unknown";
}

int dc_ncm_feat_parse(const char *s, dc_ncm_feat *out) {
    for (int f = DC_NCM_UN; f <= DC_NCM_CL2N; f++)
        if (!strcmp(s, dc_ncm_feat_name((dc_ncm_feat)f))) {
            *out = (dc_ncm_feat)f;
            return DC_OK;
        }
    return DC_ERR("ncm feat_type: expected un, l2n or cl2n, got \"%s\"", s);
}

int dc_ncm_dist_parse(const char *s, dc_ncm_dist *out) {
    for (int d = DC_NCM_DIST_L2; d <= DC_NCM_DIST_COS; d++)
        if (!strcmp(s, dc_ncm_dist_name((dc_ncm_dist)d))) {
            *out = (dc_ncm_dist)d;
            return DC_OK;
        }
    return DC_ERR("ncm dist: expected l2 or cos, got \"%s\"", s);
}

/* ---- statistics ---------------------------------------------------------------------------------------- */

int dc_ncm_stats_init(dc_ncm_stats *s, int D, int C) {
    memset(s, 0, sizeof *s);
    if (D < 1 || C < 1) return DC_ERR("ncm stats: D = %d and C = %d must be >= 1", D, C);
    size_t cd;
    if (dc_mul_size((size_t)C, (size_t)D, &cd) != DC_OK) return DC_ERR("ncm stats: C x D overflows");
    s->mean_buf = dc_calloc((size_t)D + 1, sizeof(double));
    s->buf = dc_calloc(cd + (size_t)C, sizeof(double));
    if (!s->mean_buf || !s->buf) {
        dc_ncm_stats_free(s);
        return DC_FAIL;
    }
    s->D = D;
    s->C = C;
    s->sum = s->buf;
    s->count = s->buf + cd;
    return DC_OK;
}

void dc_ncm_stats_free(dc_ncm_stats *s) {
    free(s->mean_buf);
    free(s->buf);
    memset(s, 0, sizeof *s);
}

void dc_ncm_stats_reset(dc_ncm_stats *s) {
    memset(s->mean_buf, 0, ((size_t)s->D + 1) * sizeof(double));
    memset(s->buf, 0, ((size_t)s->C * s->D + (size_t)s->C) * sizeof(double));
}

void dc_ncm_accumulate_mean(dc_ncm_stats *s, const float *X, int64_t N) {
    const int D = s->D;
    double *sum = s->mean_buf;
#pragma omp parallel for schedule(static) if (N * D >= 65536)
    for (int d0 = 0; d0 < D; d0 += COL_BLOCK) {
        const int d1 = d0 + COL_BLOCK < D ? d0 + COL_BLOCK : D;
        double acc[COL_BLOCK] = {0};
        for (int64_t i = 0; i < N; i++) {
            const float *x = X + (size_t)i * D;
            for (int d = d0; d < d1; d++) acc[d - d0] += (double)x[d];
        }
        for (int d = d0; d < d1; d++) sum[d] += acc[d - d0];
    }
    s->mean_buf[D] += (double)N;
}

int dc_ncm_mean(const dc_ncm_stats *s, float *mean_out) {
    const double n = s->mean_buf[s->D];
    if (!(n > 0)) return DC_ERR("ncm: the feature mean needs at least one training sample (pass 1 saw none)");
    for (int d = 0; d < s->D; d++) mean_out[d] = (float)(s->mean_buf[d] / n);
    return DC_OK;
}

/* 1 / ||x - mu|| (mu NULL: 1 / ||x||), 0 for a zero vector; for un, 1. */
static double row_inv_norm(const float *x, const float *mu, int D, dc_ncm_feat ft) {
    if (ft == DC_NCM_UN) return 1.0;
    double ss = 0;
    if (mu)
        for (int d = 0; d < D; d++) {
            double v = (double)x[d] - (double)mu[d];
            ss += v * v;
        }
    else
        for (int d = 0; d < D; d++) ss += (double)x[d] * (double)x[d];
    return ss > 0 ? 1.0 / sqrt(ss) : 0.0;
}

int dc_ncm_accumulate(dc_ncm_stats *s, const float *X, const int32_t *y, int64_t N, dc_ncm_feat feat_type,
                      const float *mean) {
    const int D = s->D, C = s->C;
    if (feat_type < DC_NCM_UN || feat_type > DC_NCM_CL2N)
        return DC_ERR("ncm: unknown feat_type %d", feat_type);
    if (feat_type == DC_NCM_CL2N && !mean)
        return DC_ERR("ncm: cl2n needs the training-feature mean (pass 1)");
    for (int64_t i = 0; i < N; i++)
        if (y[i] < 0 || y[i] >= C)
            return DC_ERR("ncm: label %d of row %lld is outside [0, %d)", y[i], (long long)i, C);
    const float *mu = feat_type == DC_NCM_CL2N ? mean : NULL;
    for (int64_t i0 = 0; i0 < N; i0 += ROW_BLOCK) {
        const int rows = (int)(N - i0 < ROW_BLOCK ? N - i0 : ROW_BLOCK);
        double inv[ROW_BLOCK];
        for (int r = 0; r < rows; r++) inv[r] = row_inv_norm(X + (size_t)(i0 + r) * D, mu, D, feat_type);
#pragma omp parallel for schedule(static) if ((int64_t)rows * D >= 65536)
        for (int d0 = 0; d0 < D; d0 += COL_BLOCK) {
            const int d1 = d0 + COL_BLOCK < D ? d0 + COL_BLOCK : D;
            for (int r = 0; r < rows; r++) {
                const float *x = X + (size_t)(i0 + r) * D;
                double *acc = s->sum + (size_t)y[i0 + r] * D;
                for (int d = d0; d < d1; d++) {
                    double v = mu ? (double)x[d] - (double)mu[d] : (double)x[d];
                    acc[d] += v * inv[r];
                }
            }
        }
        for (int r = 0; r < rows; r++) s->count[y[i0 + r]] += 1.0;
    }
    return DC_OK;
}

int dc_ncm_fit(const dc_ncm_stats *s, dc_ncm_feat feat_type, dc_ncm_dist dist, const float *mean,
               dc_head *out) {
    memset(out, 0, sizeof *out);
    if (feat_type < DC_NCM_UN || feat_type > DC_NCM_CL2N)
        return DC_ERR("ncm: unknown feat_type %d", feat_type);
    if (dist < DC_NCM_DIST_L2 || dist > DC_NCM_DIST_COS) return DC_ERR("ncm: unknown dist %d", dist);
    if (feat_type == DC_NCM_CL2N && !mean) return DC_ERR("ncm: cl2n needs the training-feature mean");
    for (int j = 0; j < s->C; j++)
        if (!(s->count[j] > 0))
            return DC_ERR(
                "ncm: class %d has no training sample, so it has no centroid (every class needs one)", j);
    DC_TRY(dc_head_init(out, DC_HEAD_KIND_NCM, s->D, s->C));
    out->feat_type = feat_type;
    out->dist = dist;
    for (int j = 0; j < s->C; j++) {
        const double inv = 1.0 / s->count[j];
        const double *sj = s->sum + (size_t)j * s->D;
        float *c = out->W + (size_t)j * s->D;
        for (int d = 0; d < s->D; d++) c[d] = (float)(sj[d] * inv);
    }
    if (feat_type == DC_NCM_CL2N) memcpy(out->mean, mean, (size_t)s->D * sizeof(float));
    dc_ncm_refresh(out);
    return DC_OK;
}

int dc_ncm_fit_features(const float *X, const int32_t *y, int64_t N, int D, int C, dc_ncm_feat feat_type,
                        dc_ncm_dist dist, dc_head *out) {
    memset(out, 0, sizeof *out);
    dc_ncm_stats s;
    DC_TRY(dc_ncm_stats_init(&s, D, C));
    float *mean = NULL;
    int rc = DC_OK;
    if (feat_type == DC_NCM_CL2N) {
        mean = dc_malloc((size_t)D * sizeof(float));
        if (!mean) rc = DC_FAIL;
        if (rc == DC_OK) {
            dc_ncm_accumulate_mean(&s, X, N);
            rc = dc_ncm_mean(&s, mean);
        }
    }
    if (rc == DC_OK) rc = dc_ncm_accumulate(&s, X, y, N, feat_type, mean);
    if (rc == DC_OK) rc = dc_ncm_fit(&s, feat_type, dist, mean, out);
    free(mean);
    dc_ncm_stats_free(&s);
    return rc;
}

/* ---- logits -------------------------------------------------------------------------------------------- */

void dc_ncm_refresh(dc_head *h) {
    const int D = h->D;
    for (int j = 0; j < h->C; j++) {
        const float *c = h->W + (size_t)j * D;
        double cc = 0, cm = 0;
        for (int d = 0; d < D; d++) {
            cc += (double)c[d] * c[d];
            cm += (double)c[d] * h->mean[d];
        }
        h->c_sq[j] = (float)cc;
        h->c_mu[j] = h->feat_type == DC_NCM_CL2N ? (float)cm : 0.0f;
    }
}

void dc_ncm_logits(const dc_head *h, const float *X, int N, float *logits) {
    const int D = h->D, C = h->C;
    const dc_ncm_feat ft = h->feat_type;
    const float *mu = ft == DC_NCM_CL2N ? h->mean : NULL;
    dc_linear_forward(N, D, C, X, h->W, NULL, logits); /* a_nj = x_n . c_j */
#pragma omp parallel for schedule(static) if ((int64_t)N * C >= 65536)
    for (int n = 0; n < N; n++) {
        const float *x = X + (size_t)n * D;
        float *z = logits + (size_t)n * C;
        double inv = row_inv_norm(x, mu, D, ft), tt;
        if (ft == DC_NCM_UN) {
            tt = 0;
            for (int d = 0; d < D; d++) tt += (double)x[d] * x[d];
        } else {
            tt = inv > 0 ? 1.0 : 0.0;
        }
        for (int j = 0; j < C; j++) {
            double dot = ((double)z[j] - (double)h->c_mu[j]) * inv;
            z[j] = h->dist == DC_NCM_DIST_L2 ? (float)(-(tt + (double)h->c_sq[j] - 2.0 * dot))
                                             : (float)(dot / D);
        }
    }
}
