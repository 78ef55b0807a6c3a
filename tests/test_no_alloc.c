/*
 * test_no_alloc.c: a steady-state training step allocates nothing.
 *
 * How it is checked: this program defines malloc, calloc, realloc, posix_memalign, aligned_alloc and memalign
 * itself. Symbols of the executable take precedence over libc's for every caller in the process (our code,
 * OpenBLAS, libgomp, Open MPI), so each call is counted and forwarded to glibc's __libc_* entry points. After
 * warm-up steps (OpenBLAS and libgomp allocate their pools on first use), counting is switched on for several
 * full steps: forward -> loss -> backward -> SGD, and then an evaluation forward.
 *
 * Two numbers are asserted:
 *  - allocations made by decouple's own code (callers inside this executable, where the library is linked
 *    statically) must be 0;
 *  - minor page faults during the counted steps must stay tiny: a fresh page costs ~11 us on the target VMs,
 *    so what matters is that no new memory is touched. OpenBLAS (OpenMP build) and libgomp make a few small
 *    malloc calls per parallel GEMM for their thread-team bookkeeping; they reuse freed chunks (no page
 *    faults) and are reported, not failed on.
 */
#define _GNU_SOURCE
#include "core/check.h"
#include "core/layers.h"
#include "core/net.h"
#include "core/optim.h"
#include "core/rng.h"
#include "testutil.h"

#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/resource.h>

#include "alloc_hooks.h"

static void train_step(dc_net *net, dc_sgd *opt, const float *x, const int32_t *y, int N, float *dlogits) {
    const double lrs[2] = {0.05, 0.05};
    dc_net_zero_grad(net);
    dc_net_forward(net, x, N, 1);
    dc_softmax_ce(N, net->desc.num_classes, net->logits, y, NULL, 1.0f / N, dlogits);
    dc_net_backward(net, dlogits, N, 0);
    dc_sgd_step(opt, net->params, net->grads, lrs);
}

static void run_arch(const char *arch, int in_ch, int size, int N) {
    dc_net_desc d = {
        .in_channels = in_ch, .num_classes = 10, .image_h = size, .image_w = size, .max_batch = N};
    snprintf(d.arch, sizeof d.arch, "%s", arch);
    dc_net *net;
    REQUIRE(dc_net_create(&d, &net) == DC_OK);
    dc_sgd opt;
    REQUIRE(dc_sgd_create(&opt, net, 0.1f, 0.9f, 5e-4f, 0.1f, 0.9f, 5e-4f, 1, 1) == DC_OK);
    size_t nx = (size_t)N * in_ch * size * size;
    float *x = dc_malloc(nx * sizeof(float));
    int32_t *y = dc_malloc((size_t)N * sizeof(int32_t));
    float *dlogits = dc_malloc((size_t)N * 10 * sizeof(float));
    dc_rng r = dc_rng_make(1);
    for (size_t i = 0; i < nx; i++) x[i] = dc_rng_uniform(&r) - 0.5f;
    for (int i = 0; i < N; i++) y[i] = i % 10;
    for (int i = 0; i < 2; i++) train_step(net, &opt, x, y, N, dlogits); /* warm-up */
    n_allocs = 0;
    struct rusage ru0, ru1;
    getrusage(RUSAGE_SELF, &ru0);
    counting = 1;
    for (int i = 0; i < 3; i++) train_step(net, &opt, x, y, N, dlogits);
    dc_net_forward(net, x, N, 0); /* evaluation forward too */
    counting = 0;
    getrusage(RUSAGE_SELF, &ru1);
    long ours = 0, blas = 0, gomp = 0, other = 0;
    Dl_info self;
    dladdr((void *)&run_arch, &self);
    for (long i = 0; i < n_allocs && i < 4096; i++) {
        Dl_info info;
        if (!dladdr(callers[i], &info) || !info.dli_fname)
            other++;
        else if (!strcmp(info.dli_fname, self.dli_fname))
            ours++;
        else if (strstr(info.dli_fname, "openblas"))
            blas++;
        else if (strstr(info.dli_fname, "gomp"))
            gomp++;
        else
            other++;
    }
    long faults = ru1.ru_minflt - ru0.ru_minflt;
    printf("%s: 3 training steps + 1 eval forward: %ld allocations by decouple, %ld by OpenBLAS, %ld by "
           "libgomp, "
           "%ld other; %ld minor page faults\n",
           arch, ours, blas, gomp, other, faults);
    if (!DC_ALLOC_HOOKS) printf("  (sanitizer build: allocations are not counted)\n");
    EXPECTF(ours == 0 && other == 0, "%s: %ld allocations from decouple's code, %ld unattributed", arch, ours,
            other);
    /* under ASan, OpenBLAS's and libgomp's per-GEMM mallocs go through ASan's allocator, whose quarantine
     * hands out fresh chunks instead of reusing the freed ones: the fault count measures ASan there, not
     * decouple */
    if (DC_ALLOC_HOOKS)
        EXPECTF(faults < 64, "%s: %ld page faults in steady state (fresh memory touched)", arch, faults);
    dc_sgd_free(&opt);
    dc_net_free(net);
    free(x);
    free(y);
    free(dlogits);
}

int main(void) {
    run_arch("resnet20", 1, 28, 16);
    run_arch("resnet10", 3, 64, 4);
    return tu_finish("test_no_alloc");
}
