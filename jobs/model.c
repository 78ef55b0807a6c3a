/*
 * model.c: network construction, rank synchronisation, sharded evaluation and weight files (model.h).
 */
#include "model.h"

#include "core/check.h"
#include "core/safetensors.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

dc_net *dc_job_build_net(dc_job *job, int max_batch, int image_size, int in_channels, int num_classes,
                         int inference_only) {
    const dc_config *cfg = &job->cfg;
    dc_net_desc d = {0};
    snprintf(d.arch, sizeof d.arch, "%s", cfg->feat_model.arch);
    d.in_channels = in_channels;
    d.num_classes = num_classes;
    d.image_h = d.image_w = image_size;
    d.max_batch = max_batch;
    d.inference_only = inference_only;
    dc_net *net = NULL;
    DC_CHECK_OK(dc_net_create(&d, &net),
                "check networks.feat_model and training_opt.image_size in the config");
    dc_net_init(net, cfg->training_opt.seed);
    int failed = 0;
    char msg[2048] = "";
    if (cfg->init_weights[0] && job->comm.rank == 0) {
        if (dc_safetensors_load(cfg->init_weights, net->tensors, net->n_tensors, 0) != DC_OK) {
            snprintf(msg, sizeof msg, "init_weights: %s", dc_last_error());
            failed = 1;
        }
    }
    if (dc_comm_any(&job->comm, failed)) {
        if (job->comm.rank == 0)
            dc_fatal_at(__FILE__, __LINE__, "the file must hold this architecture's state_dict", "%s", msg);
        dc_comm_barrier(&job->comm);
    }
    dc_job_broadcast_model(job, net);
    return net;
}

void dc_job_broadcast_model(dc_job *job, dc_net *net) {
    dc_comm_bcast(&job->comm, net->params, net->n_params * sizeof(float), 0);
    dc_comm_bcast(&job->comm, net->buffers, net->n_buffers * sizeof(float), 0);
    dc_comm_bcast(&job->comm, net->counters, (size_t)net->n_counters * sizeof(int64_t), 0);
}

void dc_job_average_bn(dc_job *job, dc_net *net) {
    if (job->comm.world <= 1) return;
    dc_comm_allreduce_sum_f32(&job->comm, net->buffers, net->n_buffers);
    const float inv = 1.0f / (float)job->comm.world;
    for (size_t i = 0; i < net->n_buffers; i++) net->buffers[i] *= inv;
}

void dc_job_evaluate(dc_job *job, dc_net *net, dc_dataset *ds, int max_batch, float *batch_buf,
                     int32_t *label_buf, dc_metrics *m) {
    const int64_t N = dc_dataset_size(ds);
    const int R = job->comm.world, r = job->comm.rank;
    const int64_t begin = N * r / R, end = N * (r + 1) / R;
    int64_t *idx = dc_malloc((size_t)max_batch * sizeof(int64_t)); /* once per evaluation, not per batch */
    DC_CHECK(idx != NULL, "out of memory");
    dc_metrics_reset(m);
    for (int64_t i = begin; i < end; i += max_batch) {
        int n = (int)((end - i) < max_batch ? (end - i) : max_batch);
        for (int k = 0; k < n; k++) idx[k] = i + k;
        DC_CHECK_OK(dc_dataset_get_batch(ds, idx, n, 0, job->cfg.training_opt.seed, 0, batch_buf, label_buf),
                    "fix or remove the file, or set training_opt.skip_bad_images: true");
        dc_net_forward(net, batch_buf, n, 0);
        dc_metrics_add(m, net->logits, label_buf, n);
    }
    free(idx);
    dc_comm_allreduce_sum_i64(&job->comm, m->buf, (size_t)3 * m->num_classes);
    int64_t total = 0;
    for (int c = 0; c < m->num_classes; c++) total += m->count[c];
    if (total != N)
        dc_fatal("sharded evaluation counted %lld samples, the dataset has %lld", (long long)total,
                 (long long)N);
}

int dc_job_save_weights(dc_job *job, dc_net *net, const char *path) {
    (void)job;
    const char *keys[] = {"format", "arch", "producer"};
    const char *vals[] = {"pt", net->desc.arch, "decouple"};
    return dc_safetensors_write(path, net->tensors, net->n_tensors, keys, vals, 3);
}
