/*
 * rng.h: a counter-based random generator.
 *
 * Every random number in decouple is a pure function of a key and a counter: r = H(key, counter). Keys are
 * derived from the run seed and a purpose-specific tuple, e.g.
 *     sampler stream   : key = dc_rng_key(seed, DC_RNG_SAMPLER, epoch, 0)
 *     augmentation     : key = dc_rng_key(seed, DC_RNG_AUGMENT, epoch, global_sample_index)
 *     initialisation   : key = dc_rng_key(seed, DC_RNG_INIT, tensor_index, 0)
 * so the number an image or a layer sees never depends on the rank, the thread or the world size, and a
 * resumed run regenerates the same numbers from (epoch, position) without saving any generator state.
 *
 * H is two rounds of the SplitMix64/Murmur3 64-bit finaliser over key and counter; it passes the uniformity
 * checks in tests/test_rng.c and is far cheaper than the work any sample triggers.
 */
#ifndef DC_RNG_H
#define DC_RNG_H

#include <math.h>
#include <stdint.h>

enum { DC_RNG_SAMPLER = 1, DC_RNG_AUGMENT = 2, DC_RNG_INIT = 3, DC_RNG_SPLIT = 4, DC_RNG_HEAD = 5 };

static inline uint64_t dc_mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static inline uint64_t dc_rng_key(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b) {
    uint64_t k = dc_mix64(seed + 0x9e3779b97f4a7c15ULL);
    k = dc_mix64(k ^ (purpose * 0xd1b54a32d192ed03ULL));
    k = dc_mix64(k ^ (a + 0x8cb92ba72f3d8dd7ULL));
    k = dc_mix64(k ^ (b + 0x52dce729da3ed0f5ULL));
    return k;
}

/* H(key, counter). */
static inline uint64_t dc_rng_at(uint64_t key, uint64_t counter) {
    return dc_mix64(dc_mix64(counter * 0x9e3779b97f4a7c15ULL + key) ^ key);
}

typedef struct {
    uint64_t key;
    uint64_t counter;
} dc_rng;

static inline dc_rng dc_rng_make(uint64_t key) {
    dc_rng r = {key, 0};
    return r;
}

static inline uint64_t dc_rng_u64(dc_rng *r) {
    return dc_rng_at(r->key, r->counter++);
}

/* Uniform in [0, 1) with 24 (float) or 53 (double) random bits. */
static inline float dc_rng_uniform(dc_rng *r) {
    return (float)(dc_rng_u64(r) >> 40) * (1.0f / 16777216.0f);
}
static inline double dc_rng_uniform_d(dc_rng *r) {
    return (double)(dc_rng_u64(r) >> 11) * (1.0 / 9007199254740992.0);
}

/* Uniform integer in [0, n), unbiased (Lemire's multiply-and-reject). n must be >= 1. */
static inline uint64_t dc_rng_below(dc_rng *r, uint64_t n) {
    uint64_t x = dc_rng_u64(r);
    __uint128_t m = (__uint128_t)x * n;
    uint64_t low = (uint64_t)m;
    if (low < n) {
        uint64_t threshold = (0 - n) % n;
        while (low < threshold) {
            x = dc_rng_u64(r);
            m = (__uint128_t)x * n;
            low = (uint64_t)m;
        }
    }
    return (uint64_t)(m >> 64);
}

/* Standard normal by Box-Muller (one value per call; simplicity over speed, used only at init). */
static inline double dc_rng_normal(dc_rng *r) {
    double u1 = dc_rng_uniform_d(r), u2 = dc_rng_uniform_d(r);
    if (u1 < 1e-300) u1 = 1e-300;
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

/* Fisher-Yates shuffle of an index array with a given stream. */
static inline void dc_rng_shuffle_i64(dc_rng *r, int64_t *a, int64_t n) {
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)dc_rng_below(r, (uint64_t)i + 1);
        int64_t t = a[i];
        a[i] = a[j];
        a[j] = t;
    }
}

#endif /* DC_RNG_H */
