/*
 * fuzz_list_file.c: libFuzzer target for the list-file parser (datasets/list_file.c): dc_list_file_parse,
 * dc_list_file_subset, dc_list_file_class_counts, and the class-names reader dc_class_names_read.
 *
 * Input: one control byte, then the file text.
 *   control bit 7:    the text is (also) read as a class-names file, through a temporary file;
 *   control bits 0-6: num_classes for the list (0: derived from the labels).
 * Invariants checked on a parsed list: n >= 1; every label is in [0, num_classes); every path is non-empty,
 * holds no NUL, no leading or trailing blank, lies inside the text buffer; the recorded line numbers
 * increase; class counts sum to n; a subset (every other sample, reversed) keeps paths, labels and lines.
 * Errors must carry a message that starts with the source name.
 */
#include "core/check.h"
#include "datasets/dataset.h"
#include "tests/fuzz/fuzz_common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int blank(char c) {
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static void check_list(const dc_list_file *lf, int num_classes, size_t text_len) {
    FUZZ_ASSERT(lf->n >= 1);
    FUZZ_ASSERT(num_classes == 0 || lf->num_classes == num_classes);
    FUZZ_ASSERT(lf->num_classes >= 1);
    int64_t last_line = 0;
    for (int64_t i = 0; i < lf->n; i++) {
        FUZZ_ASSERT(lf->labels[i] >= 0 && lf->labels[i] < lf->num_classes);
        FUZZ_ASSERT(lf->path_offset[i] >= 0 && (size_t)lf->path_offset[i] < text_len + (size_t)lf->n);
        const char *p = dc_list_file_path(lf, i);
        size_t len = strlen(p);
        FUZZ_ASSERT(len >= 1 && len < DC_PATH_MAX);
        FUZZ_ASSERT(!blank(p[0]) && !blank(p[len - 1]));
        FUZZ_ASSERT(lf->line[i] > last_line);
        last_line = lf->line[i];
    }
    int64_t *counts = calloc((size_t)lf->num_classes, sizeof *counts);
    FUZZ_ASSERT(counts != NULL);
    dc_list_file_class_counts(lf, counts);
    int64_t sum = 0;
    for (int c = 0; c < lf->num_classes; c++) sum += counts[c];
    FUZZ_ASSERT(sum == lf->n);
    free(counts);

    int64_t m = (lf->n + 1) / 2;
    int64_t *idx = malloc((size_t)m * sizeof *idx);
    FUZZ_ASSERT(idx != NULL);
    for (int64_t k = 0; k < m; k++) idx[k] = lf->n - 1 - 2 * k;
    dc_list_file sub;
    FUZZ_ASSERT(dc_list_file_subset(lf, idx, m, &sub) == DC_OK);
    FUZZ_ASSERT(sub.n == m && sub.num_classes == lf->num_classes);
    for (int64_t k = 0; k < m; k++) {
        FUZZ_ASSERT(strcmp(dc_list_file_path(&sub, k), dc_list_file_path(lf, idx[k])) == 0);
        FUZZ_ASSERT(sub.labels[k] == lf->labels[idx[k]] && sub.line[k] == lf->line[idx[k]]);
    }
    dc_list_file_free(&sub);
    free(idx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_bytes in = {data, size};
    const uint8_t control = fuzz_u8(&in);
    const int num_classes = control & 0x7f;
    const char *text = (const char *)in.p;

    dc_list_file lf;
    if (dc_list_file_parse(text, in.n, "fuzz.txt", num_classes, &lf) == DC_OK) {
        check_list(&lf, num_classes, in.n);
        dc_list_file_free(&lf);
    } else {
        FUZZ_ASSERT(strncmp(dc_last_error(), "fuzz.txt", 8) == 0);
        FUZZ_ASSERT(lf.n == 0 && lf.text == NULL);
    }

    if (control & 0x80) {
        char path[300];
        fuzz_path(path, sizeof path, "classes.txt");
        fuzz_write_file(path, in.p, in.n);
        int count = 0;
        char **names = NULL;
        if (dc_class_names_read(path, &count, &names) == DC_OK) {
            FUZZ_ASSERT(count >= 1 && names != NULL);
            for (int c = 0; c < count; c++) {
                size_t len = strlen(names[c]);
                FUZZ_ASSERT(len >= 1 && !blank(names[c][0]) && !blank(names[c][len - 1]));
            }
            free(names);
        } else {
            FUZZ_ASSERT(strncmp(dc_last_error(), path, strlen(path)) == 0);
            FUZZ_ASSERT(names == NULL && count == 0);
        }
    }
    return 0;
}
