/*
 * svg.h: the report's pictures as self-written SVG 1.1 (no plotting library).
 *
 *   1. per-class accuracy of every head against the classes sorted by training count (most images first),
 *      the training count on a second, logarithmic axis (right) drawn as grey bars (or a grey area for many
 *      classes), and the many / medium / few-shot regions (> 100, 20..100, < 20 training images) separated by
 *      dashed lines and labelled with their class counts;
 *   2. per-class classifier weight norms ||W_j|| (joint, tau-norm at the chosen tau, LWS ||s_j W_j||) on the
 *      same class order: the paper's figure, where the joint norms fall with class size and tau-norm / LWS
 *      flatten them;
 *   3. the tau sweep: validation macro and micro accuracy and many / medium / few against tau, with the
 *      chosen tau marked.
 *
 * Sizes: up to 300 classes every class is drawn (a marker per class, bars for the counts). Beyond that the
 * classes are aggregated in consecutive bins of the sorted order that never straddle a shot-group boundary
 * (about 60 bins in total), each point being the mean of its classes (for accuracy: the macro accuracy of
 * those classes); the count backdrop is decimated to one step per pixel column. The subtitle says which.
 *
 * Output: UTF-8, xmlns and viewBox set, every text escaped, no NaN or infinite coordinate (missing values,
 * NaN, break the line). The *_file variants write atomically (core/atomic_file.h).
 */
#ifndef DC_SVG_H
#define DC_SVG_H

#include <stdint.h>
#include <stdio.h>

#include "heads/head.h"

/* One named series of per-class values, in CLASS index order (the plot sorts them); NaN = no value. */
typedef struct {
    const char *name;
    const double *values; /* [C] */
} dc_svg_series;

#define DC_SVG_MAX_SERIES 8

/* Picture 1. values are accuracies in [0, 1] (drawn in %). train_counts [C]. */
int dc_svg_per_class_accuracy(FILE *fp, const char *title, const int64_t *train_counts, int C,
                              const dc_svg_series *series, int n_series);
int dc_svg_per_class_accuracy_file(const char *path, const char *title, const int64_t *train_counts, int C,
                                   const dc_svg_series *series, int n_series);

/* Picture 2. values are norms (>= 0), y axis from 0. */
int dc_svg_class_norms(FILE *fp, const char *title, const int64_t *train_counts, int C,
                       const dc_svg_series *series, int n_series);
int dc_svg_class_norms_file(const char *path, const char *title, const int64_t *train_counts, int C,
                            const dc_svg_series *series, int n_series);

/* Picture 3 from plain arrays [n] (accuracies in [0, 1], NaN allowed for an empty group). */
typedef struct {
    int n;
    const double *tau, *micro, *macro, *many, *medium, *few;
    int chosen;         /* index of the chosen tau, -1: none */
    const char *family; /* "tau-norm" or "logit adjustment", for the labels */
} dc_svg_sweep;
int dc_svg_tau_sweep(FILE *fp, const char *title, const dc_svg_sweep *sw);
/* ... or straight from a finished dc_tau_sweep (head.h). */
int dc_svg_tau_sweep_file(const char *path, const char *title, const dc_tau_sweep *sw);

#endif /* DC_SVG_H */
