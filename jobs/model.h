/*
 * model.h: the pieces of a job that touch the network: building it from the config, keeping the ranks'
 * copies identical, sharded evaluation, and weight files.
 */
#ifndef DC_JOB_MODEL_H
#define DC_JOB_MODEL_H

#include "core/net.h"
#include "datasets/dataset.h"
#include "heads/metrics.h"
#include "job.h"

/* Builds the network of cfg for batches of up to max_batch images, initialised from the seed (or from
 * cfg.init_weights when set), and makes every rank hold rank 0's copy. inference_only: forward-only
 * (features, evaluation; see dc_net_desc). Collective. */
dc_net *dc_job_build_net(dc_job *job, int max_batch, int image_size, int in_channels, int num_classes,
                         int inference_only);

/* Broadcasts parameters, BN buffers and counters from rank 0. Collective. */
void dc_job_broadcast_model(dc_job *job, dc_net *net);

/* Averages the BN running statistics over ranks (per-rank BN leaves them different), so every rank then holds
 * the same model for evaluation and feature extraction. Collective; a no-op on one rank. */
void dc_job_average_bn(dc_job *job, dc_net *net);

/* Evaluates `ds` sharded over the ranks: rank r takes the contiguous slice [r*N/R, (r+1)*N/R) (floor
 * boundaries: no padding, no duplicates), the per-class counters are summed over ranks, and every rank
 * checks that the total equals the dataset size. batch_buf holds max_batch images. Collective. */
void dc_job_evaluate(dc_job *job, dc_net *net, dc_dataset *ds, int max_batch, float *batch_buf,
                     int32_t *label_buf, dc_metrics *m);

/* Rank 0 writes the state_dict as safetensors (atomic). Not collective. */
int dc_job_save_weights(dc_job *job, dc_net *net, const char *path);

#endif
