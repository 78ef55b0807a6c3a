/*
 * svg.c: a small SVG 1.1 writer for the three stage-2 pictures (svg.h).
 *
 * Everything is drawn in one fixed canvas of 960 x 560 user units:
 *
 *     title (y 28), subtitle (y 48), legend rows (y 72, 90, ...)
 *     plot frame [PX0, PX1] x [PY0, PY1], left axis (values), right axis (training counts, log10), x axis
 * below
 *
 * Mapping of data to the canvas:
 *   x of a class at sorted position i (0-based, continuous):  PX0 + i / C * (PX1 - PX0)   (class i's centre:
 * i + 0.5) y of a value v on [lo, hi]:                                PY1 - (v - lo) / (hi - lo) * (PY1 -
 * PY0) y of a count n on the log axis [10^a, 10^b]:               PY1 - (log10 n - a) / (b - a) * (PY1 - PY0)
 *
 * Ticks are "nice" (1, 2, 5 x 10^k steps; decades on the log axis). Missing values (NaN) break a polyline
 * instead of producing a coordinate, and every number is printed with %.2f from a finite double, so the file
 * never contains "nan" or "inf". Text goes through xml_escape (& < > " ').
 */
#include "svg.h"

#include "core/atomic_file.h"
#include "core/check.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define SVG_W 960
#define SVG_H 560
#define PX0   80.0
#define PX1   870.0
#define PY1   485.0

#define FULL_CLASSES_MAX 300 /* up to this many classes every class is drawn */
#define TARGET_BINS      60  /* beyond: about this many bins */

static const char *const PALETTE[DC_SVG_MAX_SERIES] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                                       "#9467bd", "#8c564b", "#e377c2", "#17becf"};

/* ---- primitives ---------------------------------------------------------------------------------------- */

static void xml_escape(FILE *fp, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", fp);
            break;
        case '<':
            fputs("&lt;", fp);
            break;
        case '>':
            fputs("&gt;", fp);
            break;
        case '"':
            fputs("&quot;", fp);
            break;
        case '\'':
            fputs("&apos;", fp);
            break;
        default:
            /* control characters are not allowed in XML 1.0 text */
            if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n')
                fputc(' ', fp);
            else
                fputc(*s, fp);
        }
    }
}

/* <text> at (x, y) with a font size, an anchor (start|middle|end), extra attributes (may be "") and printf
 * text. */
DC_PRINTF(7, 8)
static void text(FILE *fp, double x, double y, int size, const char *anchor, const char *attrs,
                 const char *fmt, ...) {
    char buf[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    fprintf(fp, "<text x=\"%.2f\" y=\"%.2f\" font-size=\"%d\" text-anchor=\"%s\"%s%s>", x, y, size, anchor,
            attrs[0] ? " " : "", attrs);
    xml_escape(fp, buf);
    fputs("</text>\n", fp);
}

static void line(FILE *fp, double x0, double y0, double x1, double y1, const char *attrs) {
    fprintf(fp, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" %s/>\n", x0, y0, x1, y1, attrs);
}

static void header(FILE *fp, const char *title, const char *subtitle) {
    fputs("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n", fp);
    fprintf(fp,
            "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" height=\"%d\" "
            "viewBox=\"0 0 %d %d\" font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\">\n",
            SVG_W, SVG_H, SVG_W, SVG_H);
    fputs("<title>", fp);
    xml_escape(fp, title ? title : "");
    fputs("</title>\n", fp);
    fputs("<rect x=\"0\" y=\"0\" width=\"100%\" height=\"100%\" fill=\"white\"/>\n", fp);
    text(fp, SVG_W / 2.0, 28, 18, "middle", "font-weight=\"bold\"", "%s", title ? title : "");
    if (subtitle && subtitle[0]) text(fp, SVG_W / 2.0, 48, 12, "middle", "fill=\"#555\"", "%s", subtitle);
}

static int footer(FILE *fp) {
    fputs("</svg>\n", fp);
    if (fflush(fp) != 0 || ferror(fp)) return DC_ERR("svg: write error");
    return DC_OK;
}

/* A step of 1, 2 or 5 x 10^k giving about `target` intervals over `range`. */
static double nice_step(double range, int target) {
    if (!(range > 0)) return 1.0;
    double raw = range / target, mag = pow(10.0, floor(log10(raw))), f = raw / mag;
    return (f < 1.5 ? 1.0 : f < 3.0 ? 2.0 : f < 7.0 ? 5.0 : 10.0) * mag;
}

static int decimals_for(double step) {
    int d = (int)ceil(-log10(step) - 1e-9);
    return d < 0 ? 0 : d > 6 ? 6 : d;
}

/* counts as 1, 10, 100, 1k, 10k, 100k, 1M */
static void count_label(char *buf, size_t n, double v) {
    if (v >= 1e6)
        snprintf(buf, n, "%gM", v / 1e6);
    else if (v >= 1e3)
        snprintf(buf, n, "%gk", v / 1e3);
    else
        snprintf(buf, n, "%g", v);
}

/* Legend: one row after another from y = 72; returns the y below the last row. */
typedef struct {
    const char *name;
    const char *color;
    int kind; /* 0 line + marker, 1 dashed line, 2 filled box */
    double width;
} legend_item;

static double legend(FILE *fp, const legend_item *items, int n) {
    double x = PX0, y = 72;
    for (int i = 0; i < n; i++) {
        double w = 34 + 7.0 * (double)strlen(items[i].name) + 18;
        if (x + w > SVG_W - 20 && x > PX0) {
            x = PX0;
            y += 18;
        }
        char attrs[160];
        if (items[i].kind == 2) {
            fprintf(
                fp,
                "<rect x=\"%.2f\" y=\"%.2f\" width=\"24\" height=\"10\" fill=\"%s\" fill-opacity=\"0.5\"/>\n",
                x, y - 9, items[i].color);
        } else {
            snprintf(attrs, sizeof attrs, "stroke=\"%s\" stroke-width=\"%.1f\"%s", items[i].color,
                     items[i].width, items[i].kind == 1 ? " stroke-dasharray=\"6 3\"" : "");
            line(fp, x, y - 4, x + 24, y - 4, attrs);
            if (items[i].kind == 0)
                fprintf(fp, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>\n", x + 12, y - 4,
                        items[i].color);
        }
        text(fp, x + 30, y, 12, "start", "", "%s", items[i].name);
        x += w;
    }
    return y + 14;
}

/* Left value axis with grid lines. */
static void value_axis(FILE *fp, double lo, double hi, double py0, const char *label, int percent) {
    double step = nice_step(hi - lo, 5);
    int dec = percent ? decimals_for(step * 100) : decimals_for(step);
    for (double v = ceil(lo / step - 1e-9) * step; v <= hi + 1e-9 * step; v += step) {
        double y = PY1 - (v - lo) / (hi - lo) * (PY1 - py0);
        line(fp, PX0, y, PX1, y, "stroke=\"#e6e6e6\" stroke-width=\"1\"");
        line(fp, PX0 - 5, y, PX0, y, "stroke=\"#333\" stroke-width=\"1\"");
        text(fp, PX0 - 8, y + 4, 11, "end", "", "%.*f", dec, (percent ? v * 100 : v) + 0.0); /* no "-0" */
    }
    char attrs[96];
    double cy = (py0 + PY1) / 2;
    snprintf(attrs, sizeof attrs, "transform=\"rotate(-90 %.2f %.2f)\"", 22.0, cy);
    text(fp, 22, cy, 13, "middle", attrs, "%s", label);
}

static void frame(FILE *fp, double py0) {
    fprintf(fp,
            "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" stroke=\"#333\"/>\n",
            PX0, py0, PX1 - PX0, PY1 - py0);
}

/* Polyline through points, broken at NaN values; markers of radius r (0: none). */
static void series_path(FILE *fp, const double *xs, const double *vs, int n, double lo, double hi, double py0,
                        const char *color, double width, const char *dash, double r) {
    int open = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(vs[i])) {
            if (open) fputs("\"/>\n", fp);
            open = 0;
            continue;
        }
        double v = vs[i] < lo ? lo : vs[i] > hi ? hi : vs[i];
        double y = PY1 - (v - lo) / (hi - lo) * (PY1 - py0);
        if (!open) {
            fprintf(
                fp,
                "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"%.1f\" stroke-linejoin=\"round\"%s%s%s "
                "points=\"",
                color, width, dash ? " stroke-dasharray=\"" : "", dash ? dash : "", dash ? "\"" : "");
            open = 1;
        } else {
            fputc(' ', fp);
        }
        fprintf(fp, "%.2f,%.2f", xs[i], y);
    }
    if (open) fputs("\"/>\n", fp);
    if (r <= 0) return;
    fprintf(fp, "<g fill=\"%s\">\n", color);
    for (int i = 0; i < n; i++) {
        if (!isfinite(vs[i])) continue;
        double v = vs[i] < lo ? lo : vs[i] > hi ? hi : vs[i];
        fprintf(fp, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"%.1f\"/>\n", xs[i],
                PY1 - (v - lo) / (hi - lo) * (PY1 - py0), r);
    }
    fputs("</g>\n", fp);
}

/* ---- per-class pictures -------------------------------------------------------------------------------- */

typedef struct {
    int64_t count;
    int cls;
} ranked;

static int by_count_desc(const void *a, const void *b) {
    const ranked *x = a, *y = b;
    if (x->count != y->count) return x->count > y->count ? -1 : 1;
    return x->cls - y->cls;
}

static int shot_group(int64_t n) {
    return n >= DC_MANY_SHOT_MIN ? 0 : n > DC_FEW_SHOT_MAX ? 1 : 2;
}

static double class_x(double i, int C) {
    return PX0 + i / C * (PX1 - PX0);
}

static int per_class_plot(FILE *fp, const char *title, const char *ylabel, int percent, const int64_t *counts,
                          int C, const dc_svg_series *series, int n_series) {
    if (C < 1) return DC_ERR("svg: C must be >= 1, got %d", C);
    if (n_series < 0 || n_series > DC_SVG_MAX_SERIES)
        return DC_ERR("svg: %d series, at most %d", n_series, DC_SVG_MAX_SERIES);
    for (int j = 0; j < C; j++)
        if (counts[j] < 0) return DC_ERR("svg: training count of class %d is negative", j);

    ranked *order = dc_malloc((size_t)C * sizeof *order);
    int *bin_start = dc_malloc(((size_t)C + 4) * sizeof(int));
    double *xs = dc_malloc(((size_t)C + 4) * sizeof(double));
    double *vs = dc_malloc(((size_t)C + 4) * sizeof(double));
    if (!order || !bin_start || !xs || !vs) {
        free(order);
        free(bin_start);
        free(xs);
        free(vs);
        return DC_FAIL;
    }
    for (int j = 0; j < C; j++) order[j] = (ranked){counts[j], j};
    qsort(order, (size_t)C, sizeof *order, by_count_desc);

    /* shot-group boundaries in sorted order: [0, g1) many, [g1, g2) medium, [g2, C) few */
    int g1 = 0, g2 = 0;
    while (g1 < C && shot_group(order[g1].count) == 0) g1++;
    g2 = g1;
    while (g2 < C && shot_group(order[g2].count) == 1) g2++;
    const int gstart[4] = {0, g1, g2, C};

    /* bins: every class, or ~TARGET_BINS bins that respect the group boundaries */
    const int full = C <= FULL_CLASSES_MAX;
    int nb = 0;
    if (full) {
        for (int i = 0; i <= C; i++) bin_start[i] = i;
        nb = C;
    } else {
        for (int g = 0; g < 3; g++) {
            int n_g = gstart[g + 1] - gstart[g];
            if (n_g == 0) continue;
            int k = (int)lround((double)TARGET_BINS * n_g / C);
            if (k < 1) k = 1;
            if (k > n_g) k = n_g;
            for (int b = 0; b < k; b++) bin_start[nb++] = gstart[g] + (int)((int64_t)n_g * b / k);
        }
        bin_start[nb] = C;
    }

    /* value range */
    double lo = 0, hi = 1;
    if (!percent) {
        double mx = 0;
        for (int s = 0; s < n_series; s++)
            for (int j = 0; j < C; j++)
                if (isfinite(series[s].values[j]) && series[s].values[j] > mx) mx = series[s].values[j];
        if (!(mx > 0)) mx = 1;
        double step = nice_step(mx * 1.05, 5);
        hi = ceil(mx * 1.05 / step) * step;
    }

    char subtitle[256];
    if (full)
        snprintf(subtitle, sizeof subtitle,
                 "%d classes sorted by training images (most first); one point per class", C);
    else
        snprintf(
            subtitle, sizeof subtitle,
            "%d classes sorted by training images (most first); each point is the mean over a bin of ~%d "
            "consecutive classes",
            C, (C + nb - 1) / nb);
    header(fp, title, subtitle);

    legend_item items[DC_SVG_MAX_SERIES + 1];
    for (int s = 0; s < n_series; s++)
        items[s] = (legend_item){series[s].name ? series[s].name : "?", PALETTE[s], 0, 2.0};
    items[n_series] = (legend_item){"training images (right axis, log)", "#9a9a9a", 2, 0};
    const double py0 = legend(fp, items, n_series + 1) + 26; /* room for the shot-group labels */

    /* count backdrop on the right log axis */
    int64_t cmax = order[0].count, cmin = order[C - 1].count;
    if (cmax < 1) cmax = 1;
    if (cmin < 1) cmin = 1;
    const double la = floor(log10((double)cmin)), lb0 = ceil(log10((double)cmax));
    const double lb = lb0 > la ? lb0 : la + 1;
#define YCOUNT(n) (PY1 - (log10((double)((n) < 1 ? 1 : (n))) - la) / (lb - la) * (PY1 - py0))
    fputs("<g fill=\"#9a9a9a\" fill-opacity=\"0.35\" stroke=\"none\">\n", fp);
    if (full) {
        const double w = (PX1 - PX0) / C;
        for (int i = 0; i < C; i++) {
            double y = YCOUNT(order[i].count);
            fprintf(fp, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"/>\n",
                    class_x(i, C) + 0.1 * w, y, 0.8 * w, PY1 - y);
        }
    } else {
        /* one step per pixel column: the sorted counts fall monotonically, so the first and last class of a
         * column are its maximum and minimum */
        const int cols = (int)(PX1 - PX0);
        fprintf(fp, "<polygon points=\"%.2f,%.2f", PX0, PY1);
        for (int c = 0; c < cols; c++) {
            int i0 = (int)((int64_t)C * c / cols), i1 = (int)((int64_t)C * (c + 1) / cols) - 1;
            if (i1 < i0) continue;
            fprintf(fp, " %.2f,%.2f %.2f,%.2f", class_x(i0, C), YCOUNT(order[i0].count), class_x(i1 + 1, C),
                    YCOUNT(order[i1].count));
        }
        fprintf(fp, " %.2f,%.2f\"/>\n", PX1, PY1);
    }
    fputs("</g>\n", fp);

    /* right axis: decades, plus 2 and 5 when the axis spans at most two decades */
    for (int e = (int)la; e <= (int)lb; e++) {
        for (int m = 1; m <= 5; m++) {
            if (m != 1 && m != 2 && m != 5) continue;
            if (m != 1 && lb - la > 2) continue;
            double v = m * pow(10.0, e), lv = log10(v);
            if (lv > lb + 1e-9) continue;
            double y = PY1 - (lv - la) / (lb - la) * (PY1 - py0);
            line(fp, PX1, y, PX1 + 5, y, "stroke=\"#333\" stroke-width=\"1\"");
            char lab[32];
            count_label(lab, sizeof lab, v);
            text(fp, PX1 + 8, y + 4, 11, "start", "fill=\"#555\"", "%s", lab);
        }
    }
    {
        char attrs[96];
        double cy = (py0 + PY1) / 2;
        snprintf(attrs, sizeof attrs, "transform=\"rotate(90 %.2f %.2f)\" fill=\"#555\"", SVG_W - 28.0, cy);
        text(fp, SVG_W - 28.0, cy, 13, "middle", attrs, "training images per class (log scale)");
    }

    value_axis(fp, lo, hi, py0, ylabel, percent);

    /* shot groups: dashed separators and labels */
    static const char *gname[3] = {"many (>100)", "medium (20-100)", "few (<20)"};
    for (int g = 0; g < 3; g++) {
        int n_g = gstart[g + 1] - gstart[g];
        if (n_g == 0) continue;
        if (gstart[g] > 0)
            line(fp, class_x(gstart[g], C), py0, class_x(gstart[g], C), PY1,
                 "stroke=\"#444\" stroke-width=\"1.2\" stroke-dasharray=\"5 4\"");
        double w = class_x(gstart[g + 1], C) - class_x(gstart[g], C);
        double cx = (class_x(gstart[g], C) + class_x(gstart[g + 1], C)) / 2;
        /* the long label when it fits the region (bold 12 px text is ~7.5 px per character), else a short
         * one, else none */
        char lab[64];
        snprintf(lab, sizeof lab, "%s: %d classes", gname[g], n_g);
        if (7.5 * (double)strlen(lab) <= w - 10) {
            text(fp, cx, py0 - 7, 12, "middle", "font-weight=\"bold\" fill=\"#333\"", "%s", lab);
        } else {
            snprintf(lab, sizeof lab, "%s (%d)", g == 0 ? "many" : g == 1 ? "medium" : "few", n_g);
            if (7.0 * (double)strlen(lab) <= w - 4)
                text(fp, cx, py0 - 7, 11, "middle", "font-weight=\"bold\" fill=\"#333\"", "%s", lab);
        }
    }

    /* x axis */
    if (C <= 20) {
        for (int i = 0; i < C; i++) {
            double x = class_x(i + 0.5, C);
            line(fp, x, PY1, x, PY1 + 5, "stroke=\"#333\" stroke-width=\"1\"");
            text(fp, x, PY1 + 18, 11, "middle", "", "%d", order[i].cls);
        }
        text(fp, (PX0 + PX1) / 2, PY1 + 40, 13, "middle", "",
             "class id (sorted by training images, most first)");
    } else {
        double step = nice_step(C, 8);
        if (step < 1) step = 1;
        for (double r = step; r <= C + 1e-9; r += step) {
            double x = class_x(r - 0.5, C);
            line(fp, x, PY1, x, PY1 + 5, "stroke=\"#333\" stroke-width=\"1\"");
            text(fp, x, PY1 + 18, 11, "middle", "", "%.0f", r);
        }
        line(fp, class_x(0.5, C), PY1, class_x(0.5, C), PY1 + 5, "stroke=\"#333\" stroke-width=\"1\"");
        text(fp, class_x(0.5, C), PY1 + 18, 11, "middle", "", "1");
        text(fp, (PX0 + PX1) / 2, PY1 + 40, 13, "middle", "",
             "class rank by training images (1 = most images)");
    }

    /* the series */
    const double r = full ? (C <= 60 ? 3.0 : C <= 150 ? 2.0 : 1.3) : 2.5;
    const double width = full && C > 60 ? 1.2 : 1.8;
    for (int s = 0; s < n_series; s++) {
        for (int b = 0; b < nb; b++) {
            double acc = 0;
            int k = 0;
            for (int i = bin_start[b]; i < bin_start[b + 1]; i++) {
                double v = series[s].values[order[i].cls];
                if (isfinite(v)) {
                    acc += v;
                    k++;
                }
            }
            xs[b] = class_x((bin_start[b] + bin_start[b + 1]) / 2.0, C);
            vs[b] = k ? acc / k : NAN;
        }
        series_path(fp, xs, vs, nb, lo, hi, py0, PALETTE[s], width, NULL, r);
    }
    frame(fp, py0);
#undef YCOUNT
    free(order);
    free(bin_start);
    free(xs);
    free(vs);
    return footer(fp);
}

int dc_svg_per_class_accuracy(FILE *fp, const char *title, const int64_t *train_counts, int C,
                              const dc_svg_series *series, int n_series) {
    return per_class_plot(fp, title, "per-class top-1 accuracy (%)", 1, train_counts, C, series, n_series);
}

int dc_svg_class_norms(FILE *fp, const char *title, const int64_t *train_counts, int C,
                       const dc_svg_series *series, int n_series) {
    return per_class_plot(fp, title, "classifier weight norm of class j", 0, train_counts, C, series,
                          n_series);
}

/* ---- the tau sweep ------------------------------------------------------------------------------------- */

int dc_svg_tau_sweep(FILE *fp, const char *title, const dc_svg_sweep *sw) {
    if (sw->n < 1) return DC_ERR("svg: the tau sweep has no rows");
    const int n = sw->n;
    double tmin = INFINITY, tmax = -INFINITY, vmin = INFINITY, vmax = -INFINITY;
    const double *curves[5] = {sw->macro, sw->micro, sw->many, sw->medium, sw->few};
    for (int i = 0; i < n; i++) {
        if (!isfinite(sw->tau[i])) return DC_ERR("svg: tau[%d] is not finite", i);
        if (sw->tau[i] < tmin) tmin = sw->tau[i];
        if (sw->tau[i] > tmax) tmax = sw->tau[i];
        for (int c = 0; c < 5; c++) {
            if (!curves[c]) continue;
            double v = curves[c][i];
            if (!isfinite(v)) continue;
            if (v < vmin) vmin = v;
            if (v > vmax) vmax = v;
        }
    }
    if (!(tmax > tmin)) {
        tmin -= 0.5;
        tmax += 0.5;
    }
    if (!isfinite(vmin)) {
        vmin = 0;
        vmax = 1;
    }
    double lo = floor(vmin * 10 - 1e-9) / 10, hi = ceil(vmax * 10 + 1e-9) / 10;
    if (lo < 0) lo = 0;
    if (hi > 1) hi = 1;
    if (!(hi > lo)) hi = lo + 0.1;

    const char *fam = sw->family ? sw->family : "tau";
    char subtitle[200];
    if (sw->chosen >= 0 && sw->chosen < n)
        snprintf(subtitle, sizeof subtitle,
                 "%s, validation split; chosen \xcf\x84 = %.2f by the highest val macro accuracy (%.2f%%)",
                 fam, sw->tau[sw->chosen], 100 * sw->macro[sw->chosen]);
    else
        snprintf(subtitle, sizeof subtitle, "%s, validation split", fam);
    header(fp, title, subtitle);

    static const char *names[5] = {"val macro (mean per-class)", "val micro top-1", "many-shot",
                                   "medium-shot", "few-shot"};
    static const double widths[5] = {3.0, 2.0, 1.5, 1.5, 1.5};
    legend_item items[5];
    int ni = 0;
    for (int c = 0; c < 5; c++)
        if (curves[c]) items[ni++] = (legend_item){names[c], PALETTE[c], c == 1 ? 1 : 0, widths[c]};
    const double py0 = legend(fp, items, ni) + 26; /* room for the chosen-tau label */

    value_axis(fp, lo, hi, py0, "accuracy (%)", 1);
#define XTAU(t) (PX0 + 20 + ((t)-tmin) / (tmax - tmin) * (PX1 - PX0 - 40))
    double step = nice_step(tmax - tmin, 10);
    int dec = decimals_for(step);
    for (double t = ceil(tmin / step - 1e-9) * step; t <= tmax + 1e-9 * step; t += step) {
        line(fp, XTAU(t), PY1, XTAU(t), PY1 + 5, "stroke=\"#333\" stroke-width=\"1\"");
        text(fp, XTAU(t), PY1 + 18, 11, "middle", "", "%.*f", dec, t + 0.0);
    }
    text(fp, (PX0 + PX1) / 2, PY1 + 40, 13, "middle", "", "\xcf\x84 (%s)", fam);

    double *xs = dc_malloc((size_t)n * sizeof(double));
    if (!xs) return DC_FAIL;
    for (int i = 0; i < n; i++) xs[i] = XTAU(sw->tau[i]);
    if (sw->chosen >= 0 && sw->chosen < n) {
        double x = XTAU(sw->tau[sw->chosen]);
        line(fp, x, py0, x, PY1, "stroke=\"#000\" stroke-width=\"1.2\" stroke-dasharray=\"4 3\"");
        text(fp, x, py0 - 7, 12, "middle", "font-weight=\"bold\"", "chosen \xcf\x84 = %.2f",
             sw->tau[sw->chosen]);
    }
    /* shot-group curves first, then macro (thick), then micro dashed on top: on a class-balanced split
     * micro = macro and the dashed line must stay visible */
    static const int draw_order[5] = {4, 3, 2, 0, 1};
    for (int oi = 0; oi < 5; oi++) {
        const int c = draw_order[oi];
        if (!curves[c]) continue;
        series_path(fp, xs, curves[c], n, lo, hi, py0, PALETTE[c], widths[c], c == 1 ? "6 3" : NULL,
                    c == 0 ? 3.0 : 2.0);
    }
    if (sw->chosen >= 0 && sw->chosen < n && isfinite(sw->macro[sw->chosen])) {
        double v = sw->macro[sw->chosen];
        fprintf(
            fp,
            "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"7\" fill=\"none\" stroke=\"#000\" stroke-width=\"2\"/>\n",
            XTAU(sw->tau[sw->chosen]), PY1 - (v - lo) / (hi - lo) * (PY1 - py0));
    }
#undef XTAU
    frame(fp, py0);
    free(xs);
    return footer(fp);
}

/* ---- file variants ------------------------------------------------------------------------------------- */

typedef struct {
    int which;
    const char *title;
    const int64_t *counts;
    int C;
    const dc_svg_series *series;
    int n_series;
    const dc_svg_sweep *sweep;
} plot_job;

static int write_file(const char *path, const plot_job *j) {
    dc_atomic_file h;
    FILE *fp = dc_atomic_open(path, &h);
    if (!fp) return DC_FAIL;
    int rc = j->which == 0 ? dc_svg_per_class_accuracy(fp, j->title, j->counts, j->C, j->series, j->n_series)
             : j->which == 1 ? dc_svg_class_norms(fp, j->title, j->counts, j->C, j->series, j->n_series)
                             : dc_svg_tau_sweep(fp, j->title, j->sweep);
    if (rc != DC_OK) {
        dc_atomic_abort(&h);
        return dc_error_wrap("%s: ", path);
    }
    return dc_atomic_commit(&h);
}

int dc_svg_per_class_accuracy_file(const char *path, const char *title, const int64_t *train_counts, int C,
                                   const dc_svg_series *series, int n_series) {
    plot_job j = {0, title, train_counts, C, series, n_series, NULL};
    return write_file(path, &j);
}

int dc_svg_class_norms_file(const char *path, const char *title, const int64_t *train_counts, int C,
                            const dc_svg_series *series, int n_series) {
    plot_job j = {1, title, train_counts, C, series, n_series, NULL};
    return write_file(path, &j);
}

int dc_svg_tau_sweep_file(const char *path, const char *title, const dc_tau_sweep *ts) {
    const int n = ts->n_taus;
    double *buf = dc_malloc((size_t)6 * n * sizeof(double));
    if (!buf) return DC_FAIL;
    double *tau = buf, *micro = buf + n, *macro = buf + 2 * n, *many = buf + 3 * n, *med = buf + 4 * n,
           *few = buf + 5 * n;
    for (int k = 0; k < n; k++) {
        tau[k] = ts->rows[k].tau;
        micro[k] = ts->rows[k].s.top1;
        macro[k] = ts->rows[k].s.macro_top1;
        many[k] = ts->rows[k].s.many;
        med[k] = ts->rows[k].s.medium;
        few[k] = ts->rows[k].s.few;
    }
    dc_svg_sweep sw = {n,     tau,      micro,
                       macro, many,     med,
                       few,   ts->best, ts->family == DC_SWEEP_TAU_NORM ? "tau-norm" : "logit adjustment"};
    plot_job j = {2, title, NULL, 0, NULL, 0, &sw};
    int rc = write_file(path, &j);
    free(buf);
    return rc;
}
