/*
 * train.c: `decouple train CONFIG.yaml`, stage 1 (representation learning).
 *
 * One step, on every rank:
 *   indices  = the rank's share of global batch `step` (samplers/, a pure function of seed, epoch, step)
 *   x, y     = dataset transform of those samples (augmentation keyed by seed, epoch, sample index)
 *   logits   = net(x)                                (BN statistics per rank unless sync_bn)
 *   loss     = sum CE(logits + offset, y);  dlogits pre-scaled by 1/B (B = GLOBAL batch)
 *   grads    = backward(dlogits)                     (the one gradient slab)
 *   grads    = allreduce_sum(grads)                  (= the gradient of the global-batch mean loss)
 *   params   = SGD(params, grads, lr(epoch, step))
 */
#include "core/check.h"
#include "core/layers.h"
#include "core/optim.h"
#include "core/schedule.h"
#include "datasets/dataset.h"
#include "heads/metrics.h"
#include "job.h"
#include "model.h"
#include "samplers/sampler.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: decouple train CONFIG.yaml [options]\n"
    "\n"
    "Stage 1: trains the backbone and the joint classifier with the configured sampler, evaluates on the test\n"
    "split, and writes log_dir/final.safetensors (PyTorch state_dict names) and log_dir/train.log.\n"
    "\n"
    "options:\n"
    "  --set KEY=VALUE   override a config key (repeatable), e.g. --set training_opt.num_epochs=1\n"
    "  --max-steps N     stop after N optimizer steps (0: no limit)\n"
    "  --log-dir DIR     override training_opt.log_dir\n"
    "  --overwrite       reuse a log_dir that already holds a run\n"
    "  --threads T       OpenMP/BLAS threads per rank (default: OMP_NUM_THREADS or all cores)\n"
    "  --quiet           no progress on stdout (the log file still gets it)\n"
    "  -h, --help        this text\n"
    "\n"
    "Run on several ranks with mpirun -np R (or srun): training_opt.batch_size is the GLOBAL batch.\n";

static void log_shot_line(dc_job *job, const char *what, const dc_metrics_summary *s) {
    dc_job_print(job, "%s: top-1 %.2f%%  top-5 %.2f%%  macro %.2f%%  many %.2f%% (%d)  medium %.2f%% (%d)  "
                      "few %.2f%% (%d)  [%lld images]\n",
                 what, 100 * s->top1, 100 * s->top5, 100 * s->macro_top1, 100 * s->many, s->n_many,
                 100 * s->medium, s->n_medium, 100 * s->few, s->n_few, (long long)s->total);
}

int cmd_train(int argc, char **argv) {
    dc_job job;
    dc_job_parse_args(&job.args, argc, argv, USAGE, 1);
    job.log = NULL;
    dc_job_start(&job, &argc, &argv);
    const dc_config *cfg = &job.cfg;
    const dc_training_opt *opt = &cfg->training_opt;
    const int R = job.comm.world, rank = job.comm.rank;

    if (opt->batch_size % R != 0)
        dc_fatal_at(__FILE__, __LINE__, "choose a global batch that the number of ranks divides",
                    "%s: training_opt.batch_size %d is not divisible by the %d ranks", cfg->source_path,
                    opt->batch_size, R);
    const int B = opt->batch_size, local_B = B / R;

    dc_job_open_log_dir(&job, 0);

    /* data */
    dc_dataset *train = NULL, *test = NULL;
    DC_CHECK_OK(dc_dataset_open(opt, DC_SPLIT_TRAIN, &train), "check training_opt.dataset and data_root");
    DC_CHECK_OK(dc_dataset_open(opt, DC_SPLIT_TEST, &test), "check training_opt.dataset and data_root");
    dc_job_print(&job, "train: %s\ntest:  %s\n", dc_dataset_describe(train), dc_dataset_describe(test));
    const int C = dc_dataset_num_classes(train);
    const int S = dc_dataset_image_size(train), Cin = dc_dataset_channels(train);

    dc_sampler *sampler = NULL;
    DC_CHECK_OK(dc_sampler_create(&opt->sampler, dc_dataset_labels(train), dc_dataset_size(train), C, opt->seed,
                                  opt->num_epochs, B, R, opt->shuffle, &sampler),
                "see training_opt.sampler in docs/CONFIG.md");
    const int64_t steps_per_epoch = dc_sampler_steps_per_epoch(sampler);
    int64_t total_steps = steps_per_epoch * opt->num_epochs;
    if (opt->max_steps > 0 && opt->max_steps < total_steps) total_steps = opt->max_steps;

    /* model and optimizer */
    dc_net *net = dc_job_build_net(&job, local_B, S, Cin, C);
    if (cfg->sync_bn && R > 1) {
        net->bn_reduce.fn = dc_comm_bn_reduce;
        net->bn_reduce.ctx = &job.comm;
    }
    if (rank == 0 && !job.args.quiet) dc_net_print_summary(net);
    dc_sgd sgd;
    DC_CHECK_OK(dc_sgd_create(&sgd, net, cfg->feat_model.optim.lr, cfg->feat_model.optim.momentum,
                              cfg->feat_model.optim.weight_decay, cfg->classifier.optim.lr,
                              cfg->classifier.optim.momentum, cfg->classifier.optim.weight_decay,
                              cfg->optimizer.nesterov, cfg->optimizer.no_decay_bn_bias),
                "check networks.*.optim_params");

    /* per-class logit offset for the logit-adjusted / Balanced-Softmax loss: tau * log(pi_j) */
    float *offset = NULL;
    if (cfg->optimizer.loss_logit_adjust_tau != 0.0f) {
        offset = dc_malloc((size_t)C * sizeof(float));
        DC_CHECK(offset != NULL, "out of memory");
        const int64_t *counts = dc_dataset_class_counts(train);
        for (int c = 0; c < C; c++)
            offset[c] = cfg->optimizer.loss_logit_adjust_tau *
                        (float)log((double)counts[c] / (double)dc_dataset_size(train));
    }

    /* every buffer of the loop, allocated once */
    float *x = dc_malloc_aligned((size_t)local_B * Cin * S * S * sizeof(float));
    int32_t *y = dc_malloc((size_t)local_B * sizeof(int32_t));
    int64_t *idx = dc_malloc((size_t)local_B * sizeof(int64_t));
    int64_t *idx_next = dc_malloc((size_t)local_B * sizeof(int64_t));
    const int streaming = dc_dataset_is_streaming(train);
    float *dlogits = dc_malloc((size_t)local_B * C * sizeof(float));
    DC_CHECK(x && y && idx && idx_next && dlogits, "out of memory");
    const int augment = !opt->fixed_order;

    dc_job_print(&job, "training %s for %lld steps (%lld per epoch, global batch %d = %d ranks x %d)\n",
                 cfg->feat_model.arch, (long long)total_steps, (long long)steps_per_epoch, B, R, local_B);

    double t_start = omp_get_wtime(), t_window = t_start, loss_window = 0;
    int64_t window_steps = 0;
    double lr_now[2];
    for (int64_t step = 0; step < total_steps; step++) {
        int epoch = 0;
        DC_CHECK_OK(dc_sampler_rank_batch_at(sampler, step, rank, idx, &epoch), "sampler failure");
        const int64_t step_in_epoch = step % steps_per_epoch;
        DC_CHECK_OK(dc_dataset_get_batch(train, idx, local_B, augment, opt->seed, epoch, x, y),
                    "fix or remove the file, or set training_opt.skip_bad_images: true");
        if (streaming && step + 1 < total_steps) {
            /* start decoding the next batch in the background pool while this one trains */
            int next_epoch = 0;
            DC_CHECK_OK(dc_sampler_rank_batch_at(sampler, step + 1, rank, idx_next, &next_epoch), "sampler failure");
            DC_CHECK_OK(dc_dataset_prefetch(train, idx_next, local_B, augment, opt->seed, next_epoch),
                        "prefetch failed");
        }
        dc_net_zero_grad(net);
        dc_net_forward(net, x, local_B, 1);
        double loss_sum = dc_softmax_ce(local_B, C, net->logits, y, offset, 1.0f / (float)B, dlogits);
        dc_net_backward(net, dlogits, local_B, 0);
        dc_comm_allreduce_sum_f32(&job.comm, net->grads, net->n_params);
        lr_now[0] = dc_lr_at(&cfg->scheduler, cfg->feat_model.optim.lr, cfg->endlr, opt->num_epochs, epoch,
                             step_in_epoch, steps_per_epoch);
        lr_now[1] = dc_lr_at(&cfg->scheduler, cfg->classifier.optim.lr, cfg->endlr, opt->num_epochs, epoch,
                             step_in_epoch, steps_per_epoch);
        dc_sgd_step(&sgd, net->params, net->grads, lr_now);

        loss_window += loss_sum;
        window_steps++;
        const int display = opt->display_step > 0 && ((step + 1) % opt->display_step == 0 || step + 1 == total_steps);
        if (display) {
            /* every rank takes this branch at the same steps: the reduction is collective */
            double l = loss_window;
            dc_comm_allreduce_sum_f64(&job.comm, &l, 1);
            double mean_loss = l / ((double)window_steps * B);
            if (!isfinite(mean_loss))
                dc_fatal("non-finite loss %g at step %lld (epoch %d)", mean_loss, (long long)step + 1, epoch);
            double now = omp_get_wtime();
            double ips = (double)window_steps * B / (now - t_window);
            double eta = (now - t_start) / (double)(step + 1) * (double)(total_steps - step - 1);
            dc_job_print(&job, "epoch %3d step %6lld/%lld | loss %.4f | lr %.5f | %.1f img/s | ETA %.0f s\n",
                         epoch + 1, (long long)step + 1, (long long)total_steps, mean_loss, lr_now[0], ips, eta);
            loss_window = 0;
            window_steps = 0;
            t_window = now;
        }
    }
    double train_seconds = omp_get_wtime() - t_start;
    dc_job_print(&job, "stage 1 done in %.1f s\n", train_seconds);

    /* every rank holds the same model before evaluation */
    dc_job_average_bn(&job, net);
    dc_metrics m;
    DC_CHECK_OK(dc_metrics_init(&m, C), "out of memory");
    dc_job_evaluate(&job, net, test, local_B, x, y, &m);
    dc_metrics_summary sum;
    dc_metrics_summarize(&m, dc_dataset_class_counts(train), &sum);
    log_shot_line(&job, "test (joint classifier)", &sum);

    /* weights */
    int failed = 0;
    char path[DC_PATH_MAX + 64];
    if (cfg->save_weights[0]) snprintf(path, sizeof path, "%s", cfg->save_weights);
    else snprintf(path, sizeof path, "%s/final.safetensors", opt->log_dir);
    if (rank == 0) {
        if (dc_job_save_weights(&job, net, path) != DC_OK) {
            dc_log("error: %s", dc_last_error());
            failed = 1;
        } else {
            dc_job_print(&job, "wrote %s\n", path);
        }
    }
    if (dc_comm_any(&job.comm, failed)) dc_fatal("could not write the final weights");

    dc_metrics_free(&m);
    free(offset);
    free(x);
    free(y);
    free(idx);
    free(idx_next);
    free(dlogits);
    dc_sgd_free(&sgd);
    dc_net_free(net);
    dc_sampler_free(sampler);
    dc_dataset_free(train);
    dc_dataset_free(test);
    dc_job_finish(&job);
    return DC_EXIT_OK;
}
