/*
 * list_file.c: the "relative/path label" list files of ImageNet-LT, Places-LT, iNaturalist 2018 and the
 * CIFAR-10 JPEG folder, and the optional class-names file.
 *
 * The reference reads a list with `line.split()` and takes the two fields. We split at the LAST run of blanks
 * instead, so a path containing spaces still works, and we are stricter about everything else, because a
 * silently mis-parsed list trains a different model: every malformed line is an error that names the file and
 * the line. Accepted: CRLF line ends, a UTF-8 byte-order mark, blank lines (skipped), leading/trailing
 * blanks. Rejected: a line without a label, a label that is not a non-negative integer or is out of range,
 * bytes that are not UTF-8, NUL bytes, a line over DC_LIST_MAX_LINE bytes, an empty list.
 */
#include "datasets/dataset.h"
#include "datasets/dataset_internal.h"

#include "core/check.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DC_LIST_MAX_LINE 4095
/* With num_classes = 0 the class count is max label + 1, so one mistyped label ("3 1000000000") would make
 * every caller allocate per-class arrays of that size; the bound is training_opt.num_classes' maximum. */
#define DC_LIST_MAX_CLASSES 1000000

static int is_blank(char ch) {
    return ch == ' ' || ch == '\t' || ch == '\r' || ch == '\v' || ch == '\f';
}

/* Length of the valid UTF-8 sequence starting at s (at most `avail` bytes), or 0 when it is not valid
 * (overlong forms, surrogates and code points above U+10FFFF are invalid, as in RFC 3629). */
static int utf8_sequence_length(const unsigned char *s, size_t avail) {
    unsigned char c = s[0];
    if (c < 0x80) return 1;
    int len;
    unsigned char lo = 0x80, hi = 0xBF; /* allowed range of the second byte */
    if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c == 0xE0)
        len = 3, lo = 0xA0;
    else if (c >= 0xE1 && c <= 0xEC)
        len = 3;
    else if (c == 0xED)
        len = 3, hi = 0x9F;
    else if (c >= 0xEE && c <= 0xEF)
        len = 3;
    else if (c == 0xF0)
        len = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3)
        len = 4;
    else if (c == 0xF4)
        len = 4, hi = 0x8F;
    else
        return 0;
    if ((size_t)len > avail) return 0;
    if (s[1] < lo || s[1] > hi) return 0;
    for (int k = 2; k < len; k++)
        if (s[k] < 0x80 || s[k] > 0xBF) return 0;
    return len;
}

/* Checks one line for NUL bytes and invalid UTF-8; reports the 1-based byte column. */
static int check_line_bytes(const char *line, size_t len, const char *source, int64_t line_no) {
    const unsigned char *s = (const unsigned char *)line;
    for (size_t i = 0; i < len;) {
        if (s[i] == 0)
            return DC_ERR("%s:%lld: NUL byte at column %zu (is this a binary file rather than a list?)",
                          source, (long long)line_no, i + 1);
        int k = utf8_sequence_length(s + i, len - i);
        if (k == 0)
            return DC_ERR("%s:%lld: byte 0x%02x at column %zu is not valid UTF-8 (list files must be UTF-8)",
                          source, (long long)line_no, s[i], i + 1);
        i += (size_t)k;
    }
    return DC_OK;
}

void dc_list_file_free(dc_list_file *lf) {
    if (!lf) return;
    free(lf->text);
    free(lf->path_offset);
    free(lf->labels);
    free(lf->line);
    memset(lf, 0, sizeof *lf);
}

static int list_alloc(dc_list_file *lf, int64_t n_max, size_t text_bytes) {
    lf->text = dc_malloc(text_bytes ? text_bytes : 1);
    lf->path_offset = dc_calloc((size_t)(n_max ? n_max : 1), sizeof(int64_t));
    lf->labels = dc_calloc((size_t)(n_max ? n_max : 1), sizeof(int32_t));
    lf->line = dc_calloc((size_t)(n_max ? n_max : 1), sizeof(int64_t));
    if (!lf->text || !lf->path_offset || !lf->labels || !lf->line) {
        dc_list_file_free(lf);
        return DC_FAIL;
    }
    return DC_OK;
}

/* Parses the label token [tok, tok+len): a non-negative decimal integer that fits int32. */
static int parse_label(const char *tok, size_t len, const char *source, int64_t line_no, int num_classes,
                       int32_t *label) {
    size_t i = 0;
    int negative = 0;
    if (len > 0 && (tok[0] == '-' || tok[0] == '+')) negative = tok[0] == '-', i = 1;
    if (i == len) goto not_integer;
    long long v = 0;
    for (; i < len; i++) {
        if (tok[i] < '0' || tok[i] > '9') goto not_integer;
        if (v <= (long long)INT32_MAX) v = v * 10 + (tok[i] - '0');
    }
    if (negative && v != 0)
        return DC_ERR("%s:%lld: label %.*s is negative (labels are 0-based class numbers)", source,
                      (long long)line_no, (int)len, tok);
    if (v > INT32_MAX)
        return DC_ERR("%s:%lld: label %.*s is too large", source, (long long)line_no, (int)len, tok);
    if (num_classes > 0 && v >= num_classes)
        return DC_ERR("%s:%lld: label %lld out of range [0, %d) (training_opt.num_classes = %d)", source,
                      (long long)line_no, v, num_classes, num_classes);
    if (num_classes == 0 && v >= DC_LIST_MAX_CLASSES)
        return DC_ERR("%s:%lld: label %lld is too large (at most %d classes)", source, (long long)line_no, v,
                      DC_LIST_MAX_CLASSES);
    *label = (int32_t)v;
    return DC_OK;
not_integer:
    return DC_ERR("%s:%lld: label '%.*s' is not an integer (expected '<path> <label>')", source,
                  (long long)line_no, (int)(len > 64 ? 64 : len), tok);
}

int dc_list_file_parse(const char *text, size_t len, const char *source, int num_classes, dc_list_file *out) {
    memset(out, 0, sizeof *out);
    if (!source) source = "(list)";
    if (num_classes < 0) return DC_ERR("%s: num_classes must be >= 0, got %d", source, num_classes);
    if (!text && len) return DC_ERR("%s: NULL text", source);

    /* Upper bounds: one sample per line; the paths fit in the text plus one NUL each. */
    int64_t lines = 1;
    for (size_t i = 0; i < len; i++) lines += text[i] == '\n';
    DC_TRY(list_alloc(out, lines, len + (size_t)lines));
    snprintf(out->source, sizeof out->source, "%s", source);

    size_t pos = 0, text_used = 0;
    if (len >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) pos = 3; /* UTF-8 byte-order mark */
    int64_t line_no = 0, n = 0;
    int32_t max_label = -1;
    while (pos < len) {
        line_no++;
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t line_len = nl ? (size_t)(nl - line) : len - pos;
        pos += line_len + (nl ? 1 : 0);
        if (line_len > DC_LIST_MAX_LINE) {
            DC_ERR("%s:%lld: line is %zu bytes long, the limit is %d", source, (long long)line_no, line_len,
                   DC_LIST_MAX_LINE);
            goto fail;
        }
        if (check_line_bytes(line, line_len, source, line_no) != DC_OK) goto fail;

        size_t b = 0, e = line_len; /* trim blanks (CR included) on both ends */
        while (b < e && is_blank(line[b])) b++;
        while (e > b && is_blank(line[e - 1])) e--;
        if (b == e) continue; /* blank line */
        size_t label_begin = e;
        while (label_begin > b && !is_blank(line[label_begin - 1])) label_begin--;
        if (label_begin == b) {
            DC_ERR("%s:%lld: missing label (expected '<path> <label>', got '%.*s')", source,
                   (long long)line_no, (int)((e - b) > 80 ? 80 : (e - b)), line + b);
            goto fail;
        }
        size_t path_end = label_begin;
        while (path_end > b && is_blank(line[path_end - 1])) path_end--;
        int32_t label = 0;
        if (parse_label(line + label_begin, e - label_begin, source, line_no, num_classes, &label) != DC_OK)
            goto fail;
        size_t path_len = path_end - b;
        if (path_len > DC_PATH_MAX - 1) {
            DC_ERR("%s:%lld: path is %zu bytes long, the limit is %d", source, (long long)line_no, path_len,
                   DC_PATH_MAX - 1);
            goto fail;
        }
        memcpy(out->text + text_used, line + b, path_len);
        out->text[text_used + path_len] = '\0';
        out->path_offset[n] = (int64_t)text_used;
        out->labels[n] = label;
        out->line[n] = line_no;
        text_used += path_len + 1;
        if (label > max_label) max_label = label;
        n++;
    }
    if (n == 0) {
        DC_ERR("%s: no samples (the list is empty)", source);
        goto fail;
    }
    out->n = n;
    out->num_classes = num_classes > 0 ? num_classes : max_label + 1;
    return DC_OK;

fail:
    dc_list_file_free(out);
    return DC_FAIL;
}

/* Reads a whole file into memory (NUL-terminated). */
int dc_read_whole_file(const char *path, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return DC_ERR("%s: cannot open: %s", path, strerror(errno));
    size_t cap = 1 << 16, used = 0;
    char *buf = dc_malloc(cap);
    if (!buf) {
        fclose(f);
        return DC_FAIL;
    }
    for (;;) {
        if (used + 1 >= cap) {
            char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                fclose(f);
                return DC_ERR("%s: out of memory reading the file (%zu bytes so far)", path, used);
            }
            buf = grown;
            cap *= 2;
        }
        size_t got = fread(buf + used, 1, cap - 1 - used, f);
        used += got;
        if (got == 0) break;
    }
    int read_error = ferror(f);
    int saved_errno = errno;
    fclose(f);
    if (read_error) {
        free(buf);
        return DC_ERR("%s: read error: %s", path, strerror(saved_errno));
    }
    buf[used] = '\0';
    *data = buf;
    *len = used;
    return DC_OK;
}

int dc_list_file_read(const char *path, int num_classes, dc_list_file *out) {
    memset(out, 0, sizeof *out);
    char *data;
    size_t len;
    DC_TRY(dc_read_whole_file(path, &data, &len));
    int rc = dc_list_file_parse(data, len, path, num_classes, out);
    free(data);
    return rc;
}

void dc_list_file_class_counts(const dc_list_file *lf, int64_t *counts) {
    memset(counts, 0, sizeof(int64_t) * (size_t)lf->num_classes);
    for (int64_t i = 0; i < lf->n; i++) counts[lf->labels[i]]++;
}

int dc_list_file_subset(const dc_list_file *src, const int64_t *idx, int64_t n, dc_list_file *out) {
    memset(out, 0, sizeof *out);
    size_t text_bytes = 0;
    for (int64_t k = 0; k < n; k++) {
        if (idx[k] < 0 || idx[k] >= src->n)
            return DC_ERR("%s: subset index %lld out of range [0, %lld)", src->source, (long long)idx[k],
                          (long long)src->n);
        text_bytes += strlen(dc_list_file_path(src, idx[k])) + 1;
    }
    DC_TRY(list_alloc(out, n, text_bytes));
    size_t used = 0;
    for (int64_t k = 0; k < n; k++) {
        const char *p = dc_list_file_path(src, idx[k]);
        size_t l = strlen(p) + 1;
        memcpy(out->text + used, p, l);
        out->path_offset[k] = (int64_t)used;
        out->labels[k] = src->labels[idx[k]];
        out->line[k] = src->line[idx[k]];
        used += l;
    }
    out->n = n;
    out->num_classes = src->num_classes;
    memcpy(out->source, src->source, sizeof out->source);
    return DC_OK;
}

int dc_class_names_read(const char *path, int *count, char ***names) {
    *count = 0;
    *names = NULL;
    char *data;
    size_t len;
    DC_TRY(dc_read_whole_file(path, &data, &len));
    /* Pass 1: validate and count lines; remember the last non-blank one (trailing blank lines are fine). */
    int64_t lines = 0, last_nonblank = 0;
    size_t pos = (len >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) ? 3 : 0;
    size_t start = pos;
    for (size_t p = pos; p < len;) {
        const char *nl = memchr(data + p, '\n', len - p);
        size_t l = nl ? (size_t)(nl - (data + p)) : len - p;
        lines++;
        if (check_line_bytes(data + p, l, path, lines) != DC_OK) {
            free(data);
            return DC_FAIL;
        }
        size_t e = l;
        while (e > 0 && is_blank(data[p + e - 1])) e--;
        if (e > 0) last_nonblank = lines;
        p += l + (nl ? 1 : 0);
    }
    if (last_nonblank == 0) {
        free(data);
        return DC_ERR("%s: no class names (the file is empty)", path);
    }
    if (last_nonblank > INT32_MAX) {
        free(data);
        return DC_ERR("%s: too many class names", path);
    }
    /* Pass 2: one allocation holding the pointer array then the strings. */
    size_t ptr_bytes = sizeof(char *) * (size_t)last_nonblank;
    char **arr = dc_malloc(ptr_bytes + len + 1);
    if (!arr) {
        free(data);
        return DC_FAIL;
    }
    char *strings = (char *)arr + ptr_bytes;
    size_t used = 0;
    int64_t k = 0;
    for (size_t p = start; k < last_nonblank;) {
        const char *nl = memchr(data + p, '\n', len - p);
        size_t l = nl ? (size_t)(nl - (data + p)) : len - p;
        size_t b = 0, e = l;
        while (b < e && is_blank(data[p + b])) b++;
        while (e > b && is_blank(data[p + e - 1])) e--;
        if (e == b) {
            free(arr);
            free(data);
            return DC_ERR("%s:%lld: empty class name (line k names class k-1)", path, (long long)(k + 1));
        }
        memcpy(strings + used, data + p + b, e - b);
        strings[used + (e - b)] = '\0';
        arr[k++] = strings + used;
        used += e - b + 1;
        p += l + (nl ? 1 : 0);
    }
    free(data);
    *names = arr;
    *count = (int)last_nonblank;
    return DC_OK;
}
