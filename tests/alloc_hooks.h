/*
 * alloc_hooks.h: counts every allocation in the process, for the "no allocation in a steady-state step"
 * checks (test_no_alloc.c, test_heads.c). Include it from exactly one translation unit of a test program.
 *
 * The program defines malloc, calloc, realloc, posix_memalign, aligned_alloc and memalign itself; symbols of
 * the executable take precedence for every caller in the process (decouple, OpenBLAS, libgomp, Open MPI), so
 * each call is counted (while `counting` is set) and forwarded to glibc's __libc_* entry points. The first
 * 4096 callers are kept for attribution with dladdr. AddressSanitizer replaces malloc itself: under
 * -fsanitize=address the hooks are left out (DC_ALLOC_HOOKS 0) and the checks are skipped.
 */
#ifndef DC_ALLOC_HOOKS_H
#define DC_ALLOC_HOOKS_H

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define DC_ALLOC_HOOKS 0
#else
#define DC_ALLOC_HOOKS 1
#endif
#if DC_ALLOC_HOOKS
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);
static volatile int counting = 0;
static volatile long n_allocs = 0;
static void *callers[4096];
#define COUNT()                                                                                              \
    do {                                                                                                     \
        if (counting) {                                                                                      \
            if (n_allocs < 4096) callers[n_allocs] = __builtin_return_address(0);                            \
            n_allocs++;                                                                                      \
        }                                                                                                    \
    } while (0)
void *malloc(size_t n) {
    COUNT();
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b) {
    COUNT();
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n) {
    COUNT();
    return __libc_realloc(p, n);
}
void free(void *p) {
    __libc_free(p);
}
int posix_memalign(void **out, size_t align, size_t n) {
    COUNT();
    void *p = __libc_memalign(align, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}
void *aligned_alloc(size_t align, size_t n) {
    COUNT();
    return __libc_memalign(align, n);
}
void *memalign(size_t align, size_t n) {
    COUNT();
    return __libc_memalign(align, n);
}

__attribute__((unused)) static long our_allocs(void) {
    Dl_info self;
    dladdr((void *)&our_allocs, &self);
    long ours = 0;
    for (long i = 0; i < n_allocs && i < 4096; i++) {
        Dl_info info;
        if (!dladdr(callers[i], &info) || !info.dli_fname || !strcmp(info.dli_fname, self.dli_fname)) ours++;
    }
    return ours;
}
#else
static volatile int counting = 0;
static volatile long n_allocs = 0;
__attribute__((unused)) static void *callers[1];
__attribute__((unused)) static long our_allocs(void) {
    return 0;
}
#endif

#endif /* DC_ALLOC_HOOKS_H */
