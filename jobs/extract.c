/*
 * extract.c: `decouple extract CONFIG.yaml --weights W --split S`: runs a checkpoint over one split with
 * evaluation transforms and eval-mode batch norm, and writes (rank 0, atomically)
 *     OUT/<split>_features.npy   float32 [N, D]   the pooled backbone features
 *     OUT/<split>_logits.npy     float32 [N, C]   the joint classifier's logits
 *     OUT/<split>_labels.npy     int32   [N]
 * in dataset order. Each rank extracts the contiguous shard [r*N/R, (r+1)*N/R) and rank 0 gathers the rows.
 * The train split is read "plain" (no augmentation), as the reference's train_plain.
 */
#include "core/check.h"
#include "core/npy.h"
#include "datasets/dataset.h"
#include "job.h"
#include "model.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char *USAGE =
    "usage: decouple extract CONFIG.yaml [--weights FILE] [--split train|val|test] [--out DIR] [options]\n"
    "\n"
    "Writes DIR/<split>_features.npy [N, D], DIR/<split>_logits.npy [N, C] and DIR/<split>_labels.npy [N]\n"
    "for one split, with evaluation transforms and eval-mode batch norm.\n"
    "\n"
    "  --weights FILE    safetensors weights (default: log_dir/final.safetensors)\n"
    "  --split S         train (plain, no augmentation), val or test (default: test)\n"
    "  --out DIR         output folder (default: log_dir/features)\n"
    "  --set KEY=VALUE   override a config key (repeatable)\n"
    "  --threads T       threads per rank\n"
    "  -h, --help        this text\n";

int cmd_extract(int argc, char **argv) {
    dc_job job;
    dc_job_parse_args(&job.args, argc, argv, USAGE, 1);
    job.log = NULL;
    dc_job_start(&job, &argc, &argv);
    dc_config *cfg = &job.cfg;
    const dc_training_opt *opt = &cfg->training_opt;
    const char *split_name = job.args.split ? job.args.split : "test";
    dc_split split = !strcmp(split_name, "train") ? DC_SPLIT_TRAIN
                     : !strcmp(split_name, "val") ? DC_SPLIT_VAL
                                                  : DC_SPLIT_TEST;
    char weights[DC_PATH_MAX + 32], out_dir[DC_PATH_MAX + 32];
    if (job.args.weights)
        snprintf(weights, sizeof weights, "%s", job.args.weights);
    else
        snprintf(weights, sizeof weights, "%s/final.safetensors", opt->log_dir);
    if (job.args.out_dir)
        snprintf(out_dir, sizeof out_dir, "%s", job.args.out_dir);
    else
        snprintf(out_dir, sizeof out_dir, "%s/features", opt->log_dir);
    if (strlen(weights) >= DC_PATH_MAX) dc_fatal("--weights path too long: %s", weights);
    memcpy(cfg->init_weights, weights, strlen(weights) + 1);

    dc_dataset *ds = NULL;
    DC_CHECK_OK(dc_dataset_open(opt, split, &ds),
                "check training_opt.dataset, data_root and the split lists");
    const int C = dc_dataset_num_classes(ds), S = dc_dataset_image_size(ds), Cin = dc_dataset_channels(ds);
    const int max_batch = opt->batch_size;
    dc_net *net = dc_job_build_net(&job, max_batch, S, Cin, C, 1);
    const int D = net->feat_dim;

    const int64_t N = dc_dataset_size(ds);
    const int R = job.comm.world, r = job.comm.rank;
    const int64_t begin = N * r / R, end = N * (r + 1) / R, local = end - begin;
    float *x = dc_malloc_aligned((size_t)max_batch * Cin * S * S * sizeof(float));
    int64_t *idx = dc_malloc((size_t)max_batch * sizeof(int64_t));
    float *feat = dc_malloc(((size_t)local + 1) * D * sizeof(float));
    float *logits = dc_malloc(((size_t)local + 1) * C * sizeof(float));
    int32_t *labels = dc_malloc(((size_t)local + 1) * sizeof(int32_t));
    DC_CHECK(x && idx && feat && logits && labels, "out of memory");
    for (int64_t i = begin; i < end; i += max_batch) {
        int n = (int)((end - i) < max_batch ? (end - i) : max_batch);
        for (int k = 0; k < n; k++) idx[k] = i + k;
        DC_CHECK_OK(dc_dataset_get_batch(ds, idx, n, 0, opt->seed, 0, x, labels + (i - begin)),
                    "fix or remove the file, or set training_opt.skip_bad_images: true");
        dc_net_forward(net, x, n, 0);
        memcpy(feat + (size_t)(i - begin) * D, net->feat, (size_t)n * D * sizeof(float));
        memcpy(logits + (size_t)(i - begin) * C, net->logits, (size_t)n * C * sizeof(float));
    }
    float *all_feat = NULL, *all_logits = NULL;
    int32_t *all_labels = NULL;
    if (r == 0) {
        all_feat = dc_malloc((size_t)N * D * sizeof(float));
        all_logits = dc_malloc((size_t)N * C * sizeof(float));
        all_labels = dc_malloc((size_t)N * sizeof(int32_t));
        DC_CHECK(all_feat && all_logits && all_labels, "out of memory on rank 0 for the gathered features");
    }
    dc_comm_gather_rows(&job.comm, feat, local, (size_t)D * sizeof(float), all_feat);
    dc_comm_gather_rows(&job.comm, logits, local, (size_t)C * sizeof(float), all_logits);
    dc_comm_gather_rows(&job.comm, labels, local, sizeof(int32_t), all_labels);

    int failed = 0;
    if (r == 0) {
        char path[DC_PATH_MAX * 2 + 64];
        if (mkdir(out_dir, 0775) != 0 && errno != EEXIST) {
            dc_log("error: cannot create %s: %s", out_dir, strerror(errno));
            failed = 1;
        }
        int64_t fshape[2] = {N, D}, lshape[2] = {N, C}, yshape[1] = {N};
        snprintf(path, sizeof path, "%s/%s_features.npy", out_dir, split_name);
        if (!failed && dc_npy_write(path, DC_F32, 2, fshape, all_feat) != DC_OK) failed = 1;
        snprintf(path, sizeof path, "%s/%s_logits.npy", out_dir, split_name);
        if (!failed && dc_npy_write(path, DC_F32, 2, lshape, all_logits) != DC_OK) failed = 1;
        snprintf(path, sizeof path, "%s/%s_labels.npy", out_dir, split_name);
        if (!failed && dc_npy_write(path, DC_I32, 1, yshape, all_labels) != DC_OK) failed = 1;
        if (failed && dc_last_error()[0]) dc_log("error: %s", dc_last_error());
        if (!failed)
            printf("wrote %s/%s_{features,logits,labels}.npy: %lld x %d features, %d classes\n", out_dir,
                   split_name, (long long)N, D, C);
    }
    if (dc_comm_any(&job.comm, failed)) dc_fatal("extraction failed");
    free(all_feat);
    free(all_logits);
    free(all_labels);
    free(x);
    free(idx);
    free(feat);
    free(logits);
    free(labels);
    dc_net_free(net);
    dc_dataset_free(ds);
    dc_job_finish(&job);
    return DC_EXIT_OK;
}
