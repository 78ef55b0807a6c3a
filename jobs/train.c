/*
 * train.c: `decouple train CONFIG.yaml`, stage 1 (representation learning).
 *
 * One step, on every rank:
 *   indices  = the rank's share of global batch `step` (samplers/, a pure function of seed, epoch, step)
 *   x, y     = dataset transform of those samples (augmentation keyed by seed, epoch, sample index)
 *   logits   = net(x)                                (BN statistics per rank unless sync_bn)
 *   loss     = sum CE(logits + offset, y);  dlogits pre-scaled by 1/B (B = GLOBAL batch)
 *   grads    = backward(dlogits), buckets allreduced (summed) while backward runs (dist/grad_reduce.h)
 *   params   = SGD(params, grads, lr(epoch, step))
 *
 * Every decision that leads to a collective (display, checkpoint, stop on a signal, skip a bad batch) is
 * taken identically on every rank: from the step counter, from allreduced values, or from dc_comm_any.
 *
 * Checkpoints (dist/checkpoint.h) are written every training_opt.checkpoint_every steps (0: every epoch),
 * and when SIGTERM or SIGUSR1 arrives (Slurm's --signal): every rank finishes its step, the checkpoint is
 * written, and the job exits with DC_EXIT_PREEMPTED (3). `--resume auto` continues from the newest complete
 * checkpoint with bit-identical results.
 */
#include "core/check.h"
#include "core/layers.h"
#include "core/optim.h"
#include "core/schedule.h"
#include "datasets/dataset.h"
#include "dist/checkpoint.h"
#include "dist/grad_reduce.h"
#include "heads/metrics.h"
#include "job.h"
#include "model.h"
#include "samplers/sampler.h"
#include "stage1.h"

#include <math.h>
#include <omp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *USAGE =
    "usage: decouple train CONFIG.yaml [options]\n"
    "\n"
    "Stage 1: trains the backbone and the joint classifier with the configured sampler, evaluates on the "
    "test\n"
    "split, and writes log_dir/final.safetensors (PyTorch state_dict names), log_dir/train.log and\n"
    "checkpoints in log_dir/checkpoints.\n"
    "\n"
    "options:\n"
    "  --set KEY=VALUE   override a config key (repeatable), e.g. --set training_opt.num_epochs=1\n"
    "  --max-steps N     stop after N optimizer steps (0: no limit)\n"
    "  --log-dir DIR     override training_opt.log_dir\n"
    "  --resume auto|P   continue from the newest complete checkpoint in log_dir (auto) or from checkpoint "
    "P\n"
    "  --overwrite       reuse a log_dir that already holds a run, starting afresh\n"
    "  --threads T       OpenMP/BLAS threads per rank (default: OMP_NUM_THREADS or all cores)\n"
    "  --quiet           no progress on stdout (the log file still gets it)\n"
    "  -h, --help        this text\n"
    "\n"
    "Run on several ranks with mpirun -np R (or srun): training_opt.batch_size is the GLOBAL batch.\n"
    "SIGTERM or SIGUSR1 writes a checkpoint and exits with status 3.\n";

/* ---- signals: a flag, read at step boundaries ------------------------------------------------------------
 */

static volatile sig_atomic_t stop_signal = 0;
static void on_stop_signal(int sig) {
    stop_signal = sig;
}

static void install_signal_handlers(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);
}

/* ---- checkpoints -----------------------------------------------------------------------------------------
 */

static void checkpoint_dir(const dc_job *job, char *buf, size_t cap) {
    snprintf(buf, cap, "%s/checkpoints", job->cfg.training_opt.log_dir);
}

static void print_warnings(dc_job *job, const dc_ckpt_warnings *w) {
    for (int i = 0; i < w->n; i++) dc_job_print(job, "checkpoint: %s\n", w->line[i]);
}

/* Collective. Gathers per-rank BN statistics (when BN is per rank), rank 0 writes, all agree, rank 0 commits.
 */
static void save_checkpoint(dc_job *job, dc_net *net, dc_sgd *sgd, const dc_train_state *st,
                            float *rank_buffers) {
    char dir[DC_PATH_MAX + 32];
    checkpoint_dir(job, dir, sizeof dir);
    dc_ckpt_extra extra = {0};
    if (rank_buffers) {
        dc_comm_gather_rows(&job->comm, net->buffers, 1, net->n_buffers * sizeof(float), rank_buffers);
        extra.rank_buffers = rank_buffers;
        extra.world = job->comm.world;
    }
    double t0 = omp_get_wtime();
    int failed = 0;
    if (job->comm.rank == 0 && dc_ckpt_write(dir, net, sgd, st, rank_buffers ? &extra : NULL) != DC_OK) {
        dc_log("error: checkpoint of step %lld: %s", (long long)st->step, dc_last_error());
        failed = 1;
    }
    if (dc_comm_any(&job->comm, failed)) {
        /* a failed checkpoint write (disk full, permissions) stops the run: the previous checkpoint is intact
         */
        dc_fatal("could not write the checkpoint of step %lld into %s; earlier checkpoints are untouched",
                 (long long)st->step, dir);
    }
    dc_ckpt_warnings w;
    dc_ckpt_warnings_clear(&w);
    if (job->comm.rank == 0 &&
        dc_ckpt_commit(dir, st->step, job->cfg.training_opt.keep_checkpoints, &w) != DC_OK) {
        dc_log("error: committing the checkpoint of step %lld: %s", (long long)st->step, dc_last_error());
        failed = 1;
    }
    if (dc_comm_any(&job->comm, failed))
        dc_fatal("could not commit the checkpoint of step %lld", (long long)st->step);
    if (job->comm.rank == 0) {
        print_warnings(job, &w);
        dc_job_print(job, "checkpoint: step %lld written in %.2f s\n", (long long)st->step,
                     omp_get_wtime() - t0);
    }
}

/* Collective. Returns the step to start from (0 when starting fresh). */
static int64_t resume_checkpoint(dc_job *job, dc_net *net, dc_sgd *sgd, const char *stage,
                                 dc_train_state *st) {
    const char *how = job->args.resume;
    if (!how) return 0;
    char dir[DC_PATH_MAX + 32];
    int64_t step = 0;
    int rc = DC_OK;
    dc_ckpt_warnings w;
    dc_ckpt_warnings_clear(&w);
    char msg[1024] = "";
    if (job->comm.rank == 0) {
        if (!strcmp(how, "auto")) {
            checkpoint_dir(job, dir, sizeof dir);
            rc = dc_ckpt_find_latest(dir, &step, &w);
        } else {
            rc = dc_ckpt_resolve(how, dir, sizeof dir, &step, &w);
        }
        if (rc == DC_FAIL) snprintf(msg, sizeof msg, "%s", dc_last_error());
        print_warnings(job, &w);
    }
    int64_t shared[2] = {rc, step};
    dc_comm_bcast(&job->comm, shared, sizeof shared, 0);
    dc_comm_bcast(&job->comm, dir, sizeof dir, 0);
    rc = (int)shared[0];
    step = shared[1];
    if (rc == DC_FAIL) dc_fatal("--resume %s: %s", how, job->comm.rank == 0 ? msg : "see rank 0");
    if (rc == DC_CKPT_NONE) {
        dc_job_print(job, "resume: no complete checkpoint in %s; starting from step 0\n", dir);
        return 0;
    }
    dc_ckpt_load_opts opts = {.check_config_hash = 1,
                              .config_hash = dc_config_hash(&job->cfg),
                              .stage = stage,
                              .rank = job->comm.rank,
                              .world = job->comm.world};
    dc_ckpt_warnings_clear(&w);
    rc = dc_ckpt_load(dir, step, net, sgd, &opts, st, &w);
    int failed = rc != DC_OK;
    if (failed) dc_log("error: %s", dc_last_error());
    if (dc_comm_any(&job->comm, failed)) {
        dc_fatal_at(__FILE__, __LINE__,
                    rc == DC_CKPT_CONFIG_CHANGED
                        ? "resume with the config the run started with, or start a new run "
                          "with --overwrite or another --log-dir"
                        : "remove the damaged checkpoint or start afresh with --overwrite",
                    "cannot resume from %s step %lld", dir, (long long)step);
    }
    if (job->comm.rank == 0) print_warnings(job, &w);
    dc_job_print(job, "resume: continuing from step %lld (epoch %lld) of %s\n", (long long)step,
                 (long long)st->epoch + 1, dir);
    return step;
}

/* ---- fault injection for the failure tests (tests/e2e_mpi.sh), both RANK:STEP
 * --------------------------------- DC_INJECT_FAULT: rank RANK fails at step STEP as if a file on its shard
 * were unreadable (the whole job must end within seconds); DC_INJECT_STRAY_COLLECTIVE: rank RANK calls a
 * barrier the others never call (with DC_CHECK_COLLECTIVES=1 the job must abort with every rank's call site
 * instead of hanging). */

static int64_t injected_step(const char *env, int rank) {
    const char *v = getenv(env);
    int r;
    long long st;
    if (!v || sscanf(v, "%d:%lld", &r, &st) != 2 || r != rank) return -1;
    return st;
}

/* ---- numerical faults ------------------------------------------------------------------------------------
 */

/* The first tensor whose gradient holds a NaN or Inf (NULL when all are finite). */
static const char *nonfinite_grad(const dc_net *net) {
    int bad = 0;
#pragma omp parallel for reduction(| : bad) schedule(static)
    for (size_t i = 0; i < net->n_params; i++) bad |= !isfinite(net->grads[i]);
    if (!bad) return NULL;
    for (int t = 0; t < net->n_tensors; t++) {
        const dc_tensor *T = &net->tensors[t];
        if (T->kind != DC_KIND_PARAM) continue;
        const float *g = T->grad;
        for (int64_t i = 0; i < dc_tensor_numel(T); i++)
            if (!isfinite(g[i])) return T->name;
    }
    return "?";
}

static void log_shot_line(dc_job *job, const char *what, const dc_metrics_summary *s) {
    dc_job_print(job,
                 "%s: top-1 %.2f%%  top-5 %.2f%%  macro %.2f%%  many %.2f%% (%d)  medium %.2f%% (%d)  "
                 "few %.2f%% (%d)  [%lld images]\n",
                 what, 100 * s->top1, 100 * s->top5, 100 * s->macro_top1, 100 * s->many, s->n_many,
                 100 * s->medium, s->n_medium, 100 * s->few, s->n_few, (long long)s->total);
}

/* ---- stage 1 ---------------------------------------------------------------------------------------------
 */

int dc_stage1_train(dc_job *job, dc_stage1_result *out) {
    const dc_config *cfg = &job->cfg;
    const dc_training_opt *opt = &cfg->training_opt;
    const int R = job->comm.world, rank = job->comm.rank;
    memset(out, 0, sizeof *out);

    if (opt->batch_size % R != 0)
        dc_fatal_at(__FILE__, __LINE__, "choose a global batch that the number of ranks divides",
                    "%s: training_opt.batch_size %d is not divisible by the %d ranks", cfg->source_path,
                    opt->batch_size, R);
    const int B = opt->batch_size, local_B = B / R;

    /* data */
    dc_dataset *train = NULL, *test = NULL;
    DC_CHECK_OK(dc_dataset_open(opt, DC_SPLIT_TRAIN, &train), "check training_opt.dataset and data_root");
    DC_CHECK_OK(dc_dataset_open(opt, DC_SPLIT_TEST, &test), "check training_opt.dataset and data_root");
    dc_job_print(job, "train: %s\ntest:  %s\n", dc_dataset_describe(train), dc_dataset_describe(test));
    const int C = dc_dataset_num_classes(train);
    const int S = dc_dataset_image_size(train), Cin = dc_dataset_channels(train);

    dc_sampler *sampler = NULL;
    DC_CHECK_OK(dc_sampler_create(&opt->sampler, dc_dataset_labels(train), dc_dataset_size(train), C,
                                  opt->seed, opt->num_epochs, B, R, opt->shuffle, &sampler),
                "see training_opt.sampler in docs/CONFIG.md");
    const int64_t steps_per_epoch = dc_sampler_steps_per_epoch(sampler);
    int64_t total_steps = steps_per_epoch * opt->num_epochs;
    if (opt->max_steps > 0 && opt->max_steps < total_steps) total_steps = opt->max_steps;

    /* model and optimizer */
    dc_net *net = dc_job_build_net(job, local_B, S, Cin, C, 0);
    if (cfg->sync_bn && R > 1) {
        net->bn_reduce.fn = dc_comm_bn_reduce;
        net->bn_reduce.ctx = &job->comm;
    }
    if (rank == 0 && !job->args.quiet) dc_net_print_summary(net);
    dc_sgd sgd;
    DC_CHECK_OK(dc_sgd_create(&sgd, net, cfg->feat_model.optim.lr, cfg->feat_model.optim.momentum,
                              cfg->feat_model.optim.weight_decay, cfg->classifier.optim.lr,
                              cfg->classifier.optim.momentum, cfg->classifier.optim.weight_decay,
                              cfg->optimizer.nesterov, cfg->optimizer.no_decay_bn_bias),
                "check networks.*.optim_params");
    dc_grad_reducer reducer;
    DC_CHECK_OK(
        dc_grad_reduce_init(&reducer, &job->comm, net->grads, net->n_params, cfg->allreduce_bucket_mb),
        "out of memory");
    net->grad_ready = dc_grad_reduce_ready;
    net->grad_ready_ctx = &reducer;

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
    float *dlogits = dc_malloc((size_t)local_B * C * sizeof(float));
    float *rank_buffers = NULL; /* per-rank BN statistics for the checkpoint (rank 0) */
    if (R > 1 && !(cfg->sync_bn)) {
        rank_buffers = dc_malloc((size_t)R * (net->n_buffers ? net->n_buffers : 1) * sizeof(float));
        DC_CHECK(rank_buffers != NULL, "out of memory");
    }
    DC_CHECK(x && y && idx && idx_next && dlogits, "out of memory");
    const int augment = !opt->fixed_order;
    const int streaming = dc_dataset_is_streaming(train);

    /* resume */
    dc_train_state st;
    memset(&st, 0, sizeof st);
    int64_t start_step = resume_checkpoint(job, net, &sgd, "stage1", &st);
    double prior_seconds = start_step ? st.train_seconds : 0;
    const int64_t ckpt_every = opt->checkpoint_every > 0 ? opt->checkpoint_every : steps_per_epoch;

    dc_job_print(job, "training %s for %lld steps (%lld per epoch, global batch %d = %d ranks x %d)\n",
                 cfg->feat_model.arch, (long long)total_steps, (long long)steps_per_epoch, B, R, local_B);
    install_signal_handlers();

    double t_start = omp_get_wtime(), t_window = t_start, loss_window = 0;
    int64_t window_steps = 0, skipped = 0;
    double lr_now[2];
    int preempted = 0;
    if (streaming && start_step < total_steps) {
        int e0 = 0;
        DC_CHECK_OK(dc_sampler_rank_batch_at(sampler, start_step, rank, idx_next, &e0), "sampler failure");
        DC_CHECK_OK(dc_dataset_prefetch(train, idx_next, local_B, augment, opt->seed, e0), "prefetch failed");
    }
    const int64_t fault_step = injected_step("DC_INJECT_FAULT", rank);
    const int64_t stray_step = injected_step("DC_INJECT_STRAY_COLLECTIVE", rank);
    int64_t step = start_step;
    for (; step < total_steps; step++) {
        if (step == fault_step)
            dc_fatal(
                "injected fault (DC_INJECT_FAULT) at step %lld: pretending a training image on rank %d's "
                "shard is unreadable",
                (long long)step + 1, rank);
        if (step == stray_step)
            dc_comm_barrier(&job->comm); /* a collective only this rank reaches (test only) */
        int epoch = 0;
        DC_CHECK_OK(dc_sampler_rank_batch_at(sampler, step, rank, idx, &epoch), "sampler failure");
        const int64_t step_in_epoch = step % steps_per_epoch;
        DC_CHECK_OK(dc_dataset_get_batch(train, idx, local_B, augment, opt->seed, epoch, x, y),
                    "fix or remove the file, or set training_opt.skip_bad_images: true");
        if (streaming && step + 1 < total_steps) {
            /* start decoding the next batch in the background pool while this one trains */
            int next_epoch = 0;
            DC_CHECK_OK(dc_sampler_rank_batch_at(sampler, step + 1, rank, idx_next, &next_epoch),
                        "sampler failure");
            DC_CHECK_OK(dc_dataset_prefetch(train, idx_next, local_B, augment, opt->seed, next_epoch),
                        "prefetch failed");
        }
        dc_net_zero_grad(net);
        dc_net_forward(net, x, local_B, 1);
        double loss_sum = dc_softmax_ce(local_B, C, net->logits, y, offset, 1.0f / (float)B, dlogits);
        dc_grad_reduce_begin(&reducer);
        dc_net_backward(net, dlogits, local_B, 0);
        dc_grad_reduce_finish(&reducer, 0);

        /* after the allreduce every rank holds the same gradients: the check below agrees on every rank */
        const char *bad = nonfinite_grad(net);
        if (bad) {
            if (skipped < opt->skip_nonfinite_batches) {
                skipped++;
                dc_job_print(job,
                             "warning: step %lld (epoch %d): non-finite gradient in %s; batch skipped "
                             "(%lld of at most %d)\n",
                             (long long)step + 1, epoch + 1, bad, (long long)skipped,
                             opt->skip_nonfinite_batches);
                continue;
            }
            dc_fatal_at(
                __FILE__, __LINE__,
                "lower the learning rate, check the data, or allow isolated bad batches with "
                "training_opt.skip_nonfinite_batches; the last good checkpoint is in log_dir/checkpoints",
                "step %lld (epoch %d): non-finite gradient in %s (local loss %g)", (long long)step + 1,
                epoch + 1, bad, loss_sum);
        }
        lr_now[0] = dc_lr_at(&cfg->scheduler, cfg->feat_model.optim.lr, cfg->endlr, opt->num_epochs, epoch,
                             step_in_epoch, steps_per_epoch);
        lr_now[1] = dc_lr_at(&cfg->scheduler, cfg->classifier.optim.lr, cfg->endlr, opt->num_epochs, epoch,
                             step_in_epoch, steps_per_epoch);
        dc_sgd_step(&sgd, net->params, net->grads, lr_now);

        loss_window += loss_sum;
        window_steps++;
        const int display =
            opt->display_step > 0 && ((step + 1) % opt->display_step == 0 || step + 1 == total_steps);
        if (display) {
            double l = loss_window;
            dc_comm_allreduce_sum_f64(&job->comm, &l, 1);
            double mean_loss = l / ((double)window_steps * B);
            double now = omp_get_wtime();
            double ips = (double)window_steps * B / (now - t_window);
            double eta = (now - t_start) / (double)(step + 1 - start_step) * (double)(total_steps - step - 1);
            dc_job_print(job, "epoch %3d step %6lld/%lld | loss %.4f | lr %.5f | %.1f img/s | ETA %.0f s\n",
                         epoch + 1, (long long)step + 1, (long long)total_steps, mean_loss, lr_now[0], ips,
                         eta);
            loss_window = 0;
            window_steps = 0;
            t_window = now;
        }
        /* a signal on any rank stops every rank after this step, with a checkpoint */
        const int stop = dc_comm_any(&job->comm, stop_signal != 0);
        const int at_ckpt = (step + 1) % ckpt_every == 0 || step + 1 == total_steps;
        if (stop || at_ckpt) {
            st.step = step + 1;
            st.epoch = (step + 1) / steps_per_epoch;
            st.step_in_epoch = (step + 1) % steps_per_epoch;
            st.steps_per_epoch = steps_per_epoch;
            st.seed = opt->seed;
            st.config_hash = dc_config_hash(cfg);
            st.world_size = R;
            snprintf(st.stage, sizeof st.stage, "stage1");
            st.train_seconds = prior_seconds + omp_get_wtime() - t_start;
            save_checkpoint(job, net, &sgd, &st, rank_buffers);
        }
        if (stop) {
            dc_job_print(job, "stopped by a signal after step %lld; resume with --resume auto\n",
                         (long long)step + 1);
            preempted = 1;
            step++;
            break;
        }
    }
    /* Past the training loop nothing reads the flag: a later SIGTERM/SIGUSR1 must end the process as usual
     * (the launcher then ends the job) instead of being swallowed until the time limit kills it. */
    signal(SIGTERM, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
    out->train_seconds = prior_seconds + omp_get_wtime() - t_start;
    out->steps = step;
    out->preempted = preempted;
    if (reducer.wait_seconds > 0)
        dc_job_print(job, "allreduce: %.2f s blocked after backward (%.1f%% of training time)\n",
                     reducer.wait_seconds, 100 * reducer.wait_seconds / (omp_get_wtime() - t_start));

    if (!preempted) {
        dc_job_print(job, "stage 1 done in %.1f s\n", out->train_seconds);
        /* every rank holds the same model before evaluation */
        dc_job_average_bn(job, net);
        dc_metrics m;
        DC_CHECK_OK(dc_metrics_init(&m, C), "out of memory");
        dc_job_evaluate(job, net, test, local_B, x, y, &m);
        dc_metrics_summarize(&m, dc_dataset_class_counts(train), &out->test);
        log_shot_line(job, "test (joint classifier)", &out->test);
        dc_metrics_free(&m);

        int failed = 0;
        if (cfg->save_weights[0])
            snprintf(out->weights_path, sizeof out->weights_path, "%s", cfg->save_weights);
        else
            snprintf(out->weights_path, sizeof out->weights_path, "%s/final.safetensors", opt->log_dir);
        if (rank == 0) {
            if (dc_job_save_weights(job, net, out->weights_path) != DC_OK) {
                dc_log("error: %s", dc_last_error());
                failed = 1;
            } else {
                dc_job_print(job, "wrote %s\n", out->weights_path);
            }
        }
        if (dc_comm_any(&job->comm, failed)) dc_fatal("could not write the final weights");
    }

    free(offset);
    free(x);
    free(y);
    free(idx);
    free(idx_next);
    free(dlogits);
    free(rank_buffers);
    dc_grad_reduce_free(&reducer);
    dc_sgd_free(&sgd);
    dc_net_free(net);
    dc_sampler_free(sampler);
    dc_dataset_free(train);
    dc_dataset_free(test);
    return preempted ? DC_EXIT_PREEMPTED : DC_EXIT_OK;
}

int cmd_train(int argc, char **argv) {
    dc_job job;
    dc_job_parse_args(&job.args, argc, argv, USAGE, 1);
    job.log = NULL;
    dc_job_start(&job, &argc, &argv);
    dc_job_open_log_dir(&job, job.args.resume != NULL);
    dc_stage1_result res;
    int code = dc_stage1_train(&job, &res);
    dc_job_finish(&job);
    return code;
}
