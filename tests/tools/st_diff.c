/*
 * st_diff: compares the tensors of two safetensors files (for the end-to-end tests).
 *
 *   st_diff A B            exit 0 when every tensor is bit-identical (names, dtypes, shapes, bytes)
 *   st_diff A B --tol T    exit 0 when every float tensor agrees to relative error T
 *                          (max |a - b| / max |b| per tensor) and every integer tensor is equal
 *   st_diff A B --gtol T   one relative error for the whole state: ||a - b||_2 / ||b||_2 over every float
 * tensor together. Per-tensor maxima are dominated by tensors that start at 0 (BN biases) and move by sums
 * that cancel almost exactly, so they measure float cancellation (1 vs 2 OpenMP threads on one rank shows the
 * same), not a disagreement of ranks. Prints the worst tensor. Metadata is ignored.
 */
#include "core/check.h"
#include "core/safetensors.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc != 3 && !(argc == 5 && (!strcmp(argv[3], "--tol") || !strcmp(argv[3], "--gtol")))) {
        fprintf(stderr, "usage: st_diff A.safetensors B.safetensors [--tol T | --gtol T]\n");
        return 2;
    }
    double tol = argc == 5 ? atof(argv[4]) : -1;
    const int global = argc == 5 && !strcmp(argv[3], "--gtol");
    double g_num = 0, g_den = 1e-300; /* sums of squares over all float tensors */
    dc_st_file a, b;
    if (dc_st_read(argv[1], &a) != DC_OK || dc_st_read(argv[2], &b) != DC_OK) {
        fprintf(stderr, "st_diff: %s\n", dc_last_error());
        return 2;
    }
    if (a.n_entries != b.n_entries) {
        printf("different tensor counts: %d vs %d\n", a.n_entries, b.n_entries);
        return 1;
    }
    double worst = 0;
    const char *worst_name = "";
    int differ = 0;
    for (int i = 0; i < a.n_entries; i++) {
        const dc_st_entry *ea = &a.entries[i], *eb = dc_st_find(&b, ea->name);
        if (!eb || eb->dtype != ea->dtype || eb->end - eb->begin != ea->end - ea->begin) {
            printf("tensor %s: missing or different dtype/size in %s\n", ea->name, argv[2]);
            return 1;
        }
        const uint8_t *pa = a.data + ea->begin, *pb = b.data + eb->begin;
        size_t nbytes = ea->end - ea->begin;
        if (tol < 0 || ea->dtype != DC_F32) {
            if (memcmp(pa, pb, nbytes) != 0) {
                printf("tensor %s differs\n", ea->name);
                differ = 1;
            }
            continue;
        }
        const float *fa = (const float *)pa, *fb = (const float *)pb;
        size_t n = nbytes / 4;
        double num = 0, den = 1e-30;
        for (size_t k = 0; k < n; k++) {
            double d = fabs((double)fa[k] - fb[k]);
            if (!(d <= num)) num = d;
            if (fabs(fb[k]) > den) den = fabs(fb[k]);
        }
        for (size_t k = 0; k < n; k++) {
            double d = (double)fa[k] - fb[k];
            g_num += d * d;
            g_den += (double)fb[k] * fb[k];
        }
        double rel = num / den;
        if (!(rel <= worst)) {
            worst = rel;
            worst_name = ea->name;
        }
    }
    if (tol >= 0 && global) {
        double g = sqrt(g_num / g_den);
        printf("relative L2 error over all tensors %.3g (tolerance %.3g); worst single tensor (max-norm) "
               "%.3g in %s\n",
               g, tol, worst, worst_name);
        differ = differ || !(g <= tol);
    } else if (tol >= 0) {
        printf("worst relative error %.3g in %s (tolerance %.3g)\n", worst, worst_name, tol);
        differ = differ || !(worst <= tol);
    } else if (!differ) {
        printf("all %d tensors bit-identical\n", a.n_entries);
    }
    dc_st_free(&a);
    dc_st_free(&b);
    return differ ? 1 : 0;
}
