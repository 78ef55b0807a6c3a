/*
 * schedule.h: learning-rate schedules.
 *
 * Time is measured in epochs, t = epoch + step/steps_per_epoch when the schedule is per step, or t = epoch
 * when it is per epoch (the reference steps CosineAnnealingLR once per epoch).
 *
 *   warm-up (t < W):   lr = base * (s + (1 - s) * t / W)           s = warmup_start (BagofTricks: 1/3)
 *   constant:          lr = base
 *   multistep:         lr = base * gamma^(number of milestones <= epoch)   (BagofTricks: x0.01 at 160 and 180
 *                      is gamma 0.1 with milestones [160, 180])
 *   cosine:            lr = endlr + (base - endlr) * (1 + cos(pi * (t - W) / (T - W))) / 2
 *
 * reference_step_first reproduces classifier-balancing, which calls scheduler.step() before each epoch: epoch
 * e then runs at the cosine value of e + 1, and the last epoch at lr = endlr. Off by default
 * (docs/CONFIG.md).
 */
#ifndef DC_SCHEDULE_H
#define DC_SCHEDULE_H

#include "config.h"

#include <stdint.h>

double dc_lr_at(const dc_sched_cfg *s, double base_lr, double endlr, int num_epochs, int epoch, int64_t step,
                int64_t steps_per_epoch);

#endif
