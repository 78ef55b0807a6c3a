/*
 * check.h: error handling for decouple.
 *
 * Two layers, as in genann and llm.c:
 *
 *  - Library code (core/, datasets/, samplers/, heads/, dist/) never exits. A function that can fail returns
 *    an int status (0 on success, DC_FAIL on error) or NULL, after recording a message with DC_ERR(...).
 *    The message is kept per thread and read with dc_last_error(). Messages name the file, the line or key,
 *    and what was expected, e.g. "configs/x.yaml:12: training_opt.batch_size: expected an integer >= 1, got
 * -3".
 *
 *  - Programs (jobs/) decide what an error means. dc_fatal() prints "[rNN] error: ..." with file:line and a
 *    hint, then calls the registered abort hook (MPI_Abort when MPI is up, see dist/) or exit(1). So a
 * failing rank never leaves the others hanging in a collective.
 *
 * DC_CHECK(cond, hint) is for invariants inside programs and tests; it is fatal.
 */
#ifndef DC_CHECK_H
#define DC_CHECK_H

#include <stddef.h>
#include <stdint.h>

#define DC_OK   0
#define DC_FAIL (-1)

#if defined(__GNUC__)
#define DC_PRINTF(a, b) __attribute__((format(printf, a, b)))
#define DC_NORETURN     __attribute__((noreturn))
#else
#define DC_PRINTF(a, b)
#define DC_NORETURN
#endif

/* Records an error message (thread-local) and returns DC_FAIL, so `return DC_ERR("...")` reads naturally.
 * The source location is kept separately for debugging (dc_last_error_where). */
int dc_error_at(const char *src_file, int src_line, const char *fmt, ...) DC_PRINTF(3, 4);
#define DC_ERR(...) dc_error_at(__FILE__, __LINE__, __VA_ARGS__)

/* Prefixes the current error with more context: "reading x.safetensors: <previous message>". */
int dc_error_wrap(const char *fmt, ...) DC_PRINTF(1, 2);

const char *dc_last_error(void);       /* the message, "" when none */
const char *dc_last_error_where(void); /* "core/conv.c:123" of the DC_ERR that set it */
void dc_clear_error(void);

/* Propagate a failing status upwards. */
#define DC_TRY(expr)                                                                                         \
    do {                                                                                                     \
        int dc_rc_ = (expr);                                                                                 \
        if (dc_rc_ != DC_OK) return dc_rc_;                                                                  \
    } while (0)

/* Allocation that records an error instead of crashing: size overflow and ENOMEM both return NULL. */
void *dc_malloc(size_t nbytes);
void *dc_calloc(size_t count, size_t size);
/* 64-byte aligned (for SIMD and cache lines); free with dc_free_aligned. */
void *dc_malloc_aligned(size_t nbytes);
void dc_free_aligned(void *p);

/* Checked multiplication for sizes: returns 0 and sets *out, or DC_FAIL on overflow. */
int dc_mul_size(size_t a, size_t b, size_t *out);

/* ---- program-level fatal path ---- */

/* Hook called by dc_fatal after printing; dist/ installs one that calls MPI_Abort. Default: exit(code). */
typedef void (*dc_abort_hook)(int exit_code);
void dc_set_abort_hook(dc_abort_hook hook);
/* Rank used in message prefixes ("[r01] "); -1 (default) prints no prefix. */
void dc_set_log_rank(int rank);
int dc_log_rank(void);

DC_NORETURN void dc_fatal_at(const char *src_file, int src_line, const char *hint, const char *fmt, ...)
    DC_PRINTF(4, 5);
#define dc_fatal(...) dc_fatal_at(__FILE__, __LINE__, NULL, __VA_ARGS__)

/* Abort (through the hook) with the last recorded library error, plus a hint for the user. */
#define DC_CHECK_OK(expr, hint)                                                                              \
    do {                                                                                                     \
        if ((expr) != DC_OK) dc_fatal_at(__FILE__, __LINE__, (hint), "%s", dc_last_error());                 \
    } while (0)

#define DC_CHECK(cond, hint)                                                                                 \
    do {                                                                                                     \
        if (!(cond)) dc_fatal_at(__FILE__, __LINE__, (hint), "check failed: %s", #cond);                     \
    } while (0)

/* printf on stderr with the rank prefix; for warnings and progress that every rank may emit. */
void dc_log(const char *fmt, ...) DC_PRINTF(1, 2);

#endif /* DC_CHECK_H */
