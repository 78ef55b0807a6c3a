/*
 * sampler.h: the training-set samplers of Kang et al. (ICLR 2020), distributed from the first line.
 *
 * The paper trains the representation with samples drawn so that class j has probability
 *
 *     p_j = n_j^q / sum_i n_i^q,          q = 1: instance-balanced, q = 1/2: square-root, q = 0:
 * class-balanced
 *
 * and, for progressively-balanced sampling, p_j(t) = (1 - lambda_t) n_j / N + lambda_t / C. The four
 * strategies of dc_sampler_type realise these the way the reference (facebookresearch/classifier-balancing)
 * does; the formulas, the mapping to the reference's classes and every difference are in docs/SAMPLERS.md.
 *
 * Distributed shape. Every rank builds the SAME global sample stream of an epoch: a pure function of
 * (seed, epoch) through the counter-based RNG (core/rng.h), never of the rank or the world size.
 *
 *   - An epoch has steps_per_epoch = floor(N / B) global batches, B the GLOBAL batch (the reference's
 *     `epoch_steps = int(len(train_dataset) / batch_size)`): the tail is dropped, never padded.
 *   - Global batch `step` of an epoch is stream positions [step*B, (step+1)*B). With the in-batch shuffle on,
 *     each global batch is permuted (keyed by seed, epoch, step) before sharding.
 *   - Rank r of R takes the CONTIGUOUS slice [r*B/R, (r+1)*B/R) of every global batch. This is exactly what
 *     the reference's nn.DataParallel scatter does with R GPUs, so each rank's BatchNorm sees the same batch
 *     composition as the reference's per-GPU BN (including the k-sample groups of the class-aware sampler
 *     when the in-batch shuffle is off). B must be divisible by R.
 *   - The sampler state is (epoch, step) only. A resumed run calls dc_sampler_rank_batch_at with the global
 *     step it resumes from and gets the identical remaining stream; nothing else is saved. Since the global
 *     stream does not depend on R, a run may even resume with a different world size.
 *
 * Cost: set_epoch generates the whole epoch stream (O(N) time, 8 bytes per sample: 3.5 MB for iNat2018's
 * 437,513 images); reading a batch is a copy. All memory is allocated at creation; nothing allocates later.
 * A dc_sampler is not thread-safe while its epoch changes; batch reads of one epoch may run concurrently.
 */
#ifndef DC_SAMPLER_H
#define DC_SAMPLER_H

#include <stdint.h>

#include "core/config.h"

typedef struct dc_sampler dc_sampler;

/* Creates a sampler over the N training labels (labels[i] in [0, num_classes); the array is not kept).
 *   cfg:         type, num_samples_cls (k, class-aware), q (power), pb_epochs (T, progressive; <= 0 means
 *                num_epochs)
 *   seed:        the run seed; streams use dc_rng_key(seed, DC_RNG_SAMPLER, epoch, sub) (docs/SAMPLERS.md)
 *   num_epochs:  the run length, used only as the default T of the progressive sampler
 *   global_batch B, world_size R: the per-rank batch is B / R
 *   shuffle_in_batch: permute every global batch before sharding (reference `training_opt.shuffle`)
 * Errors (DC_FAIL, message names the config key): B < 1, R < 1, B % R != 0, B > N, a label out of range,
 * q outside [0, 1], num_samples_cls < 1, T < 1, and a class with no sample when the strategy needs every
 * class (class-aware, power with q < 1, progressive). */
int dc_sampler_create(const dc_sampler_cfg *cfg, const int32_t *labels, int64_t N, int num_classes,
                      uint64_t seed, int num_epochs, int global_batch, int world_size, int shuffle_in_batch,
                      dc_sampler **out);
void dc_sampler_free(dc_sampler *s);

int64_t dc_sampler_steps_per_epoch(const dc_sampler *s); /* floor(N / B) */
int dc_sampler_global_batch_size(const dc_sampler *s);   /* B */
int dc_sampler_local_batch_size(const dc_sampler *s);    /* B / R */
int dc_sampler_world_size(const dc_sampler *s);          /* R */
int dc_sampler_current_epoch(const dc_sampler *s);       /* -1 before the first set_epoch */

/* Prepares epoch `epoch` (>= 0): generates its stream unless it is already the current one. Any epoch may
 * be selected in any order (going back regenerates the identical stream). */
int dc_sampler_set_epoch(dc_sampler *s, int epoch);

/* The current epoch's stream: steps_per_epoch * B sample indices (before sharding, after the in-batch
 * shuffle when it is on). NULL before the first set_epoch. For tests and statistics. */
const int64_t *dc_sampler_epoch_stream(const dc_sampler *s, int64_t *length);

/* Global batch `step` (0 <= step < steps_per_epoch) of the current epoch: out[B]. */
int dc_sampler_global_batch(const dc_sampler *s, int64_t step, int64_t *out);

/* Rank `rank`'s share of global batch `step` of the current epoch: out[B / R], the contiguous slice
 * [rank*B/R, (rank+1)*B/R) of the global batch. */
int dc_sampler_rank_batch(const dc_sampler *s, int64_t step, int rank, int64_t *out);

/* The same addressed by the run's global step counter (the trainer's only sampler state): the epoch is
 * global_step / steps_per_epoch and is prepared when needed, the step is global_step % steps_per_epoch.
 * *epoch_out (may be NULL) receives the epoch. */
int dc_sampler_rank_batch_at(dc_sampler *s, int64_t global_step, int rank, int64_t *out, int *epoch_out);

/* Class probabilities the sampler targets at epoch `epoch`: probs[num_classes], summing to 1.
 *   instance: n_j / N;  class-aware: 1 / C;  power: n_j^q / sum_i n_i^q;
 *   progressive: (1 - lambda) n_j / N + lambda / C with lambda = min(epoch, T-1) / (T-1) (0 when T = 1). */
void dc_sampler_class_probs(const dc_sampler *s, int epoch, double *probs);

/* The progressive sampler's lambda at `epoch` (the reference's lams[clip(epoch, 0, T-1)]); 0 for the
 * other strategies. */
double dc_sampler_pb_lambda(const dc_sampler *s, int epoch);

#endif /* DC_SAMPLER_H */
