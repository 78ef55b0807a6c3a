/*
 * sampler.c: instance-, class-aware, power (square-root) and progressively-balanced sampling as one global,
 * rank-independent stream per epoch (see sampler.h for the distributed contract, docs/SAMPLERS.md for the
 * mapping to the reference implementation).
 *
 * Every epoch's stream is generated in full by set_epoch, from (seed, epoch) alone:
 *
 *   instance    : the first floor(N/B)*B entries of a uniformly random permutation of [0, N).
 *   class-aware : classes visited round-robin in a random order that is reshuffled whenever it wraps; each
 *                 visit emits the next k samples of that class's cycle.
 *   power       : i.i.d. draws: a class from p_j = n_j^q / sum_i n_i^q (Walker/Vose alias table), then a
 * sample uniformly within the class. Per instance that is p_j / n_j, the reference's weight. progressive :
 * i.i.d. classes from p_j(t) = (1 - lambda_t) n_j/N + lambda_t/C (alias table rebuilt per epoch), then the
 * next sample of that class's cycle.
 *
 * A class "cycle" is the reference's RandomCycleIter: the class's samples in a shuffled order, read one by
 * one, reshuffled each time it is exhausted, so a class is sampled without replacement until it runs out.
 * Cycles restart (from the ascending order, shuffled at first use) at every epoch: that keeps each epoch a
 * pure function of (seed, epoch), which is what makes resume and any-order epochs exact.
 *
 * RNG keys (a = epoch), all under DC_RNG_SAMPLER:
 *   sub = 0                 the main stream: permutation, class-order shuffles, alias and in-class draws
 *   sub = 2^40 + step       the in-batch shuffle of global batch `step`
 *   sub = 2^41 + c          the cycle shuffles of class c (its own counter, so a class's cycle does not
 *                           depend on the draws of other classes)
 */
#include "sampler.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/check.h"
#include "core/rng.h"

#define SUB_MAIN          0ULL
#define SUB_BATCH_SHUFFLE (1ULL << 40)
#define SUB_CLASS_CYCLE   (1ULL << 41)

struct dc_sampler {
    dc_sampler_type type;
    int k;    /* class-aware: consecutive samples per class visit */
    double q; /* power exponent */
    int T;    /* progressive: pb_epochs */
    int64_t N;
    int C, B, R;
    int shuffle_in_batch;
    uint64_t seed;
    int64_t steps;  /* floor(N / B) */
    int64_t length; /* steps * B, the stream length of one epoch */
    int epoch;      /* epoch whose stream is in `stream`, -1 when none */

    int64_t *class_start; /* [C+1]: class c's samples are class_members[class_start[c] .. class_start[c+1]) */
    int64_t *class_members; /* [N]: sample indices grouped by class, ascending within a class */
    int64_t *cycle;         /* [N]: the per-class cycles, same layout as class_members */
    int64_t *cycle_pos;     /* [C]: next read position in each cycle (n_c means "reshuffle first") */
    uint64_t *cycle_ctr;    /* [C]: RNG counter of each class's cycle key */
    int64_t *class_order;   /* [C]: class-aware round-robin order */
    double *alias_prob;     /* [C]: alias table: keep column i with this probability ... */
    int32_t *alias_idx;     /* [C]: ... else take alias_idx[i] */
    double *alias_scaled;   /* [C]: scratch for building the table */
    int32_t *alias_stack;   /* [2C]: scratch: "small" and "large" work lists */
    int64_t *stream;        /* [N] (>= length): the current epoch's stream */
};

static const char *type_name(dc_sampler_type t) {
    switch (t) {
    case DC_SAMPLER_INSTANCE:
        return "instance_balanced";
    case DC_SAMPLER_CLASS_AWARE:
        return "class_aware";
    case DC_SAMPLER_POWER:
        return "power";
    case DC_SAMPLER_PROGRESSIVE:
        return "progressive";
    }
    return "unknown";
}

static int64_t class_count(const dc_sampler *s, int c) {
    return s->class_start[c + 1] - s->class_start[c];
}

/* ---- alias method ---------------------------------------------------------------------------------------
 * Vose's construction: scale p_i by C so the mean column height is 1; repeatedly pair a short column (< 1)
 * with a tall one (>= 1), letting the tall column fill the short one's remainder. A draw picks a column i
 * uniformly and keeps i with probability alias_prob[i], else takes alias_idx[i]; the probability of class j
 * is then (alias_prob[j] + sum_{i: alias_idx[i]=j} (1 - alias_prob[i])) / C = p_j. O(C) to build, O(1) a
 * draw. Weights are >= 0 with a positive sum (N >= 1). A zero-weight column is always short by a whole 1, so
 * it is always paired with a tall column and never left over by rounding. */
static void alias_build(dc_sampler *s, const double *weight) {
    const int C = s->C;
    double total = 0;
    for (int i = 0; i < C; i++) total += weight[i];
    int32_t *small = s->alias_stack, *large = s->alias_stack + C;
    int ns = 0, nl = 0;
    for (int i = 0; i < C; i++) {
        s->alias_scaled[i] = weight[i] / total * C;
        if (s->alias_scaled[i] < 1.0)
            small[ns++] = i;
        else
            large[nl++] = i;
    }
    while (ns > 0 && nl > 0) {
        int32_t lo = small[--ns], hi = large[--nl];
        s->alias_prob[lo] = s->alias_scaled[lo];
        s->alias_idx[lo] = hi;
        s->alias_scaled[hi] = (s->alias_scaled[hi] + s->alias_scaled[lo]) - 1.0;
        if (s->alias_scaled[hi] < 1.0)
            small[ns++] = hi;
        else
            large[nl++] = hi;
    }
    /* What remains is 1 up to rounding (about C * 1e-16): keep the column always. */
    while (nl > 0) {
        int32_t i = large[--nl];
        s->alias_prob[i] = 1.0;
        s->alias_idx[i] = i;
    }
    while (ns > 0) {
        int32_t i = small[--ns];
        s->alias_prob[i] = 1.0;
        s->alias_idx[i] = i;
    }
}

static int alias_draw(const dc_sampler *s, dc_rng *rng) {
    int i = (int)dc_rng_below(rng, (uint64_t)s->C);
    return dc_rng_uniform_d(rng) < s->alias_prob[i] ? i : s->alias_idx[i];
}

/* ---- class cycles (the reference's RandomCycleIter) ---------------------------------------------------- */

static void cycles_reset(dc_sampler *s) {
    memcpy(s->cycle, s->class_members, (size_t)s->N * sizeof *s->cycle);
    for (int c = 0; c < s->C; c++) {
        s->cycle_pos[c] = class_count(s, c); /* exhausted: the first read shuffles, as RandomCycleIter */
        s->cycle_ctr[c] = 0;
    }
}

static int64_t cycle_next(dc_sampler *s, int c) {
    int64_t n = class_count(s, c);
    int64_t *members = s->cycle + s->class_start[c];
    if (s->cycle_pos[c] == n) {
        dc_rng rng = {dc_rng_key(s->seed, DC_RNG_SAMPLER, (uint64_t)s->epoch, SUB_CLASS_CYCLE + (uint64_t)c),
                      s->cycle_ctr[c]};
        dc_rng_shuffle_i64(&rng, members, n);
        s->cycle_ctr[c] = rng.counter;
        s->cycle_pos[c] = 0;
    }
    return members[s->cycle_pos[c]++];
}

/* ---- target class distributions ------------------------------------------------------------------------ */

double dc_sampler_pb_lambda(const dc_sampler *s, int epoch) {
    if (s->type != DC_SAMPLER_PROGRESSIVE || s->T <= 1) return 0.0; /* numpy linspace(0, 1, 1) = [0] */
    int t = epoch < 0 ? 0 : (epoch > s->T - 1 ? s->T - 1 : epoch);
    return (double)t / (double)(s->T - 1);
}

/* Unnormalised class weights the i.i.d. samplers draw from (and, normalised, what they target). */
static void class_weights(const dc_sampler *s, int epoch, double *w) {
    const double N = (double)s->N, C = (double)s->C;
    for (int c = 0; c < s->C; c++) {
        double n = (double)class_count(s, c);
        switch (s->type) {
        case DC_SAMPLER_INSTANCE:
            w[c] = n;
            break;
        case DC_SAMPLER_CLASS_AWARE:
            w[c] = 1.0;
            break;
        case DC_SAMPLER_POWER: /* an empty class (allowed only at q = 1) has no mass; pow(0, 0) would be 1 */
            w[c] = n > 0 ? pow(n, s->q) : 0.0;
            break;
        case DC_SAMPLER_PROGRESSIVE: {
            double lam = dc_sampler_pb_lambda(s, epoch);
            w[c] = (1.0 - lam) * (n / N) + lam / C;
            break;
        }
        }
    }
}

void dc_sampler_class_probs(const dc_sampler *s, int epoch, double *probs) {
    class_weights(s, epoch, probs);
    double total = 0;
    for (int c = 0; c < s->C; c++) total += probs[c];
    for (int c = 0; c < s->C; c++) probs[c] /= total;
}

/* ---- creation ------------------------------------------------------------------------------------------ */

void dc_sampler_free(dc_sampler *s) {
    if (!s) return;
    free(s->class_start);
    free(s->class_members);
    free(s->cycle);
    free(s->cycle_pos);
    free(s->cycle_ctr);
    free(s->class_order);
    free(s->alias_prob);
    free(s->alias_idx);
    free(s->alias_scaled);
    free(s->alias_stack);
    free(s->stream);
    free(s);
}

int dc_sampler_create(const dc_sampler_cfg *cfg, const int32_t *labels, int64_t N, int num_classes,
                      uint64_t seed, int num_epochs, int global_batch, int world_size, int shuffle_in_batch,
                      dc_sampler **out) {
    if (!out) return DC_ERR("dc_sampler_create: out is NULL");
    *out = NULL;
    if (!cfg || !labels) return DC_ERR("dc_sampler_create: cfg and labels must not be NULL");
    if (cfg->type < DC_SAMPLER_INSTANCE || cfg->type > DC_SAMPLER_PROGRESSIVE)
        return DC_ERR("training_opt.sampler.type: unknown sampler type %d", (int)cfg->type);
    if (num_classes < 1) return DC_ERR("training_opt.num_classes: expected >= 1, got %d", num_classes);
    if (N < 1) return DC_ERR("training_opt.sampler: the training set is empty (N = %lld)", (long long)N);
    if (global_batch < 1) return DC_ERR("training_opt.batch_size: expected >= 1, got %d", global_batch);
    if (world_size < 1) return DC_ERR("dc_sampler_create: world size must be >= 1, got %d", world_size);
    if (global_batch % world_size != 0)
        return DC_ERR("training_opt.batch_size: the global batch %d is not divisible by the world size %d "
                      "(each rank trains on batch_size / world_size samples)",
                      global_batch, world_size);
    if ((int64_t)global_batch > N)
        return DC_ERR("training_opt.batch_size: batch_size %d exceeds the %lld training samples",
                      global_batch, (long long)N);
    if (cfg->type == DC_SAMPLER_CLASS_AWARE && cfg->num_samples_cls < 1)
        return DC_ERR("training_opt.sampler.num_samples_cls: expected >= 1, got %d", cfg->num_samples_cls);
    if (cfg->type == DC_SAMPLER_POWER && !(cfg->q >= 0.0 && cfg->q <= 1.0))
        return DC_ERR("training_opt.sampler.q: expected a value in [0, 1], got %g", cfg->q);
    int T = cfg->pb_epochs > 0 ? cfg->pb_epochs : num_epochs;
    if (cfg->type == DC_SAMPLER_PROGRESSIVE && T < 1)
        return DC_ERR("training_opt.sampler.pb_epochs: expected >= 1 (or training_opt.num_epochs >= 1 as the "
                      "default), got pb_epochs = %d, num_epochs = %d",
                      cfg->pb_epochs, num_epochs);
    for (int64_t i = 0; i < N; i++)
        if (labels[i] < 0 || labels[i] >= num_classes)
            return DC_ERR("training_opt.num_classes: training sample %lld has label %d, outside [0, %d)",
                          (long long)i, (int)labels[i], num_classes);

    dc_sampler *s = dc_calloc(1, sizeof *s);
    if (!s) return DC_FAIL;
    s->type = cfg->type;
    s->k = cfg->num_samples_cls;
    s->q = cfg->q;
    s->T = T;
    s->N = N;
    s->C = num_classes;
    s->B = global_batch;
    s->R = world_size;
    s->shuffle_in_batch = shuffle_in_batch != 0;
    s->seed = seed;
    s->steps = N / global_batch;
    s->length = s->steps * global_batch;
    s->epoch = -1;

    const size_t C = (size_t)num_classes, n = (size_t)N;
    s->class_start = dc_calloc(C + 1, sizeof *s->class_start);
    s->class_members = dc_calloc(n, sizeof *s->class_members);
    s->cycle = dc_calloc(n, sizeof *s->cycle);
    s->cycle_pos = dc_calloc(C, sizeof *s->cycle_pos);
    s->cycle_ctr = dc_calloc(C, sizeof *s->cycle_ctr);
    s->class_order = dc_calloc(C, sizeof *s->class_order);
    s->alias_prob = dc_calloc(C, sizeof *s->alias_prob);
    s->alias_idx = dc_calloc(C, sizeof *s->alias_idx);
    s->alias_scaled = dc_calloc(C, sizeof *s->alias_scaled);
    s->alias_stack = dc_calloc(2 * C, sizeof *s->alias_stack);
    s->stream = dc_calloc(n, sizeof *s->stream);
    if (!s->class_start || !s->class_members || !s->cycle || !s->cycle_pos || !s->cycle_ctr ||
        !s->class_order || !s->alias_prob || !s->alias_idx || !s->alias_scaled || !s->alias_stack ||
        !s->stream) {
        dc_sampler_free(s);
        return DC_FAIL;
    }

    /* Counting sort of the sample indices by class (CSR layout), ascending within each class. */
    for (int64_t i = 0; i < N; i++) s->class_start[labels[i] + 1]++;
    for (size_t c = 0; c < C; c++) s->class_start[c + 1] += s->class_start[c];
    int64_t *fill = s->cycle_pos; /* scratch until the first epoch */
    for (size_t c = 0; c < C; c++) fill[c] = s->class_start[c];
    for (int64_t i = 0; i < N; i++) s->class_members[fill[labels[i]]++] = i;

    int needs_every_class = s->type == DC_SAMPLER_CLASS_AWARE || s->type == DC_SAMPLER_PROGRESSIVE ||
                            (s->type == DC_SAMPLER_POWER && s->q < 1.0);
    if (needs_every_class)
        for (int c = 0; c < num_classes; c++)
            if (class_count(s, c) == 0) {
                int rc = DC_ERR("training_opt.sampler: class %d has no training samples, but the %s sampler "
                                "draws every class (check training_opt.num_classes = %d and the labels)",
                                c, type_name(s->type), num_classes);
                dc_sampler_free(s);
                return rc;
            }

    if (s->type == DC_SAMPLER_POWER) {      /* epoch-independent: build once */
        class_weights(s, 0, s->alias_prob); /* alias_build reads the weights before overwriting them */
        alias_build(s, s->alias_prob);
    }
    *out = s;
    return DC_OK;
}

/* ---- one epoch's stream -------------------------------------------------------------------------------- */

static void generate_instance(dc_sampler *s, dc_rng *rng) {
    for (int64_t i = 0; i < s->N; i++) s->stream[i] = i;
    dc_rng_shuffle_i64(rng, s->stream, s->N); /* the first `length` entries are used */
}

static void generate_class_aware(dc_sampler *s, dc_rng *rng) {
    const int C = s->C;
    for (int c = 0; c < C; c++) s->class_order[c] = c;
    int order_pos = C; /* exhausted: the first visit shuffles the class order */
    for (int64_t p = 0; p < s->length; p += s->k) {
        if (order_pos == C) {
            dc_rng_shuffle_i64(rng, s->class_order, C);
            order_pos = 0;
        }
        int c = (int)s->class_order[order_pos++];
        for (int j = 0; j < s->k && p + j < s->length; j++) s->stream[p + j] = cycle_next(s, c);
    }
}

static void generate_power(dc_sampler *s, dc_rng *rng) {
    for (int64_t p = 0; p < s->length; p++) {
        int c = alias_draw(s, rng);
        int64_t j = (int64_t)dc_rng_below(rng, (uint64_t)class_count(s, c));
        s->stream[p] = s->class_members[s->class_start[c] + j];
    }
}

static void generate_progressive(dc_sampler *s, dc_rng *rng) {
    class_weights(s, s->epoch, s->alias_prob); /* as in dc_sampler_create */
    alias_build(s, s->alias_prob);
    for (int64_t p = 0; p < s->length; p++) s->stream[p] = cycle_next(s, alias_draw(s, rng));
}

int dc_sampler_set_epoch(dc_sampler *s, int epoch) {
    if (!s) return DC_ERR("dc_sampler_set_epoch: sampler is NULL");
    if (epoch < 0) return DC_ERR("dc_sampler_set_epoch: epoch must be >= 0, got %d", epoch);
    if (epoch == s->epoch) return DC_OK;
    s->epoch = epoch;
    dc_rng rng = dc_rng_make(dc_rng_key(s->seed, DC_RNG_SAMPLER, (uint64_t)epoch, SUB_MAIN));
    cycles_reset(s);
    switch (s->type) {
    case DC_SAMPLER_INSTANCE:
        generate_instance(s, &rng);
        break;
    case DC_SAMPLER_CLASS_AWARE:
        generate_class_aware(s, &rng);
        break;
    case DC_SAMPLER_POWER:
        generate_power(s, &rng);
        break;
    case DC_SAMPLER_PROGRESSIVE:
        generate_progressive(s, &rng);
        break;
    }
    /* In-batch shuffle (reference `shuffle_batch`), applied to the global batch before it is sharded. */
    if (s->shuffle_in_batch)
        for (int64_t step = 0; step < s->steps; step++) {
            dc_rng r = dc_rng_make(
                dc_rng_key(s->seed, DC_RNG_SAMPLER, (uint64_t)epoch, SUB_BATCH_SHUFFLE + (uint64_t)step));
            dc_rng_shuffle_i64(&r, s->stream + step * s->B, s->B);
        }
    return DC_OK;
}

/* ---- reading batches ----------------------------------------------------------------------------------- */

int64_t dc_sampler_steps_per_epoch(const dc_sampler *s) {
    return s->steps;
}
int dc_sampler_global_batch_size(const dc_sampler *s) {
    return s->B;
}
int dc_sampler_local_batch_size(const dc_sampler *s) {
    return s->B / s->R;
}
int dc_sampler_world_size(const dc_sampler *s) {
    return s->R;
}
int dc_sampler_current_epoch(const dc_sampler *s) {
    return s->epoch;
}

const int64_t *dc_sampler_epoch_stream(const dc_sampler *s, int64_t *length) {
    if (length) *length = s->epoch < 0 ? 0 : s->length;
    return s->epoch < 0 ? NULL : s->stream;
}

static int check_step(const dc_sampler *s, int64_t step) {
    if (s->epoch < 0) return DC_ERR("sampler: no epoch selected (call dc_sampler_set_epoch first)");
    if (step < 0 || step >= s->steps)
        return DC_ERR("sampler: step %lld is outside the epoch's [0, %lld) steps", (long long)step,
                      (long long)s->steps);
    return DC_OK;
}

int dc_sampler_global_batch(const dc_sampler *s, int64_t step, int64_t *out) {
    DC_TRY(check_step(s, step));
    memcpy(out, s->stream + step * s->B, (size_t)s->B * sizeof *out);
    return DC_OK;
}

int dc_sampler_rank_batch(const dc_sampler *s, int64_t step, int rank, int64_t *out) {
    DC_TRY(check_step(s, step));
    if (rank < 0 || rank >= s->R)
        return DC_ERR("sampler: rank %d is outside [0, %d) (the world size given at creation)", rank, s->R);
    const int local = s->B / s->R;
    memcpy(out, s->stream + step * s->B + (int64_t)rank * local, (size_t)local * sizeof *out);
    return DC_OK;
}

int dc_sampler_rank_batch_at(dc_sampler *s, int64_t global_step, int rank, int64_t *out, int *epoch_out) {
    if (global_step < 0) return DC_ERR("sampler: global step must be >= 0, got %lld", (long long)global_step);
    int64_t epoch = global_step / s->steps;
    if (epoch > INT_MAX) return DC_ERR("sampler: global step %lld is too large", (long long)global_step);
    DC_TRY(dc_sampler_set_epoch(s, (int)epoch));
    if (epoch_out) *epoch_out = (int)epoch;
    return dc_sampler_rank_batch(s, global_step % s->steps, rank, out);
}
