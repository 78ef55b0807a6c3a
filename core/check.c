/*
 * check.c: thread-local error messages, checked allocation, and the program-level fatal path.
 */
#include "check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DC_ERRBUF 1024

static _Thread_local char err_msg[DC_ERRBUF];
static _Thread_local char err_where[128];
static dc_abort_hook abort_hook = NULL;
static int log_rank = -1;

int dc_error_at(const char *src_file, int src_line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_msg, sizeof err_msg, fmt, ap);
    va_end(ap);
    snprintf(err_where, sizeof err_where, "%s:%d", src_file, src_line);
    return DC_FAIL;
}

int dc_error_wrap(const char *fmt, ...) {
    char prefix[DC_ERRBUF / 2], old[DC_ERRBUF];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err_msg, sizeof old);
    snprintf(err_msg, sizeof err_msg, "%s: %.*s", prefix, (int)(DC_ERRBUF / 2 - 3), old);
    return DC_FAIL;
}

const char *dc_last_error(void) {
    return err_msg;
}
const char *dc_last_error_where(void) {
    return err_where;
}
void dc_clear_error(void) {
    err_msg[0] = '\0';
    err_where[0] = '\0';
}

int dc_mul_size(size_t a, size_t b, size_t *out) {
    if (a != 0 && b > SIZE_MAX / a) return DC_ERR("size overflow: %zu x %zu", a, b);
    *out = a * b;
    return DC_OK;
}

void *dc_malloc(size_t nbytes) {
    void *p = malloc(nbytes ? nbytes : 1);
    if (!p) DC_ERR("out of memory allocating %zu bytes", nbytes);
    return p;
}

void *dc_calloc(size_t count, size_t size) {
    size_t n = 0;
    if (dc_mul_size(count, size, &n) != DC_OK) return NULL;
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) DC_ERR("out of memory allocating %zu bytes", n);
    return p;
}

void *dc_malloc_aligned(size_t nbytes) {
    void *p = NULL;
    size_t rounded = (nbytes + 63) & ~(size_t)63;
    if (rounded < nbytes || posix_memalign(&p, 64, rounded ? rounded : 64) != 0) {
        DC_ERR("out of memory allocating %zu bytes", nbytes);
        return NULL;
    }
    return p;
}

void dc_free_aligned(void *p) {
    free(p);
}

void dc_set_abort_hook(dc_abort_hook hook) {
    abort_hook = hook;
}
void dc_set_log_rank(int rank) {
    log_rank = rank;
}
int dc_log_rank(void) {
    return log_rank;
}

static void print_prefix(FILE *f) {
    if (log_rank >= 0) fprintf(f, "[r%02d] ", log_rank);
}

void dc_log(const char *fmt, ...) {
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    print_prefix(stderr);
    fputs(line, stderr);
    size_t n = strlen(line);
    if (n == 0 || line[n - 1] != '\n') fputc('\n', stderr);
    fflush(stderr);
}

void dc_fatal_at(const char *src_file, int src_line, const char *hint, const char *fmt, ...) {
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fflush(stdout);
    print_prefix(stderr);
    fprintf(stderr, "error: %s\n", msg);
    if (hint && hint[0]) {
        print_prefix(stderr);
        fprintf(stderr, "---> HINT: %s\n", hint);
    }
    print_prefix(stderr);
    fprintf(stderr, "(raised at %s:%d)\n", src_file, src_line);
    fflush(stderr);
    if (abort_hook) abort_hook(1);
    exit(1);
}
