/*
 * schedule.c: learning-rate schedules (formulas in schedule.h).
 */
#include "schedule.h"

#include <math.h>

double dc_lr_at(const dc_sched_cfg *s, double base_lr, double endlr, int num_epochs, int epoch, int64_t step,
                int64_t steps_per_epoch) {
    const int per_step = s->per_step && steps_per_epoch > 0;
    double t = per_step ? epoch + (double)step / (double)steps_per_epoch : (double)epoch;
    if (s->reference_step_first) t += 1.0;
    const double W = s->warmup_epochs;
    if (W > 0 && t < W) {
        double start = s->warmup_start;
        return base_lr * (start + (1.0 - start) * t / W);
    }
    switch (s->type) {
    case DC_SCHED_CONSTANT:
        return base_lr;
    case DC_SCHED_MULTISTEP: {
        double lr = base_lr;
        for (int i = 0; i < s->num_milestones; i++)
            if (epoch >= s->milestones[i]) lr *= s->gamma;
        return lr;
    }
    case DC_SCHED_COSINE: {
        double T = (double)num_epochs - W;
        double u = T > 0 ? (t - W) / T : 1.0;
        if (u > 1.0) u = 1.0;
        if (u < 0.0) u = 0.0;
        return endlr + (base_lr - endlr) * 0.5 * (1.0 + cos(M_PI * u));
    }
    }
    return base_lr;
}
