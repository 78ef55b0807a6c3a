/*
 * layers.h: every layer except convolution (conv.h), each as an explicit forward/backward pair.
 *
 * Conventions (llm.c style):
 *  - Activations are CNHW (layout.h): channel c of a batch is the contiguous row x + c*M, M = N*H*W.
 *  - Shapes are in the comments; single capitals are dimensions.
 *  - Backward functions OVERWRITE the input gradient dx and ACCUMULATE (+=) parameter gradients, so the
 *    optimizer zeroes the one gradient slab once per step and shared parameters would simply add up.
 *  - Nothing here allocates; scratch comes from the caller.
 *  - Reductions over the batch are accumulated in double in a fixed order, so results are deterministic for
 *    a fixed thread count.
 */
#ifndef DC_LAYERS_H
#define DC_LAYERS_H

#include <stddef.h>
#include <stdint.h>

/* ---------------------------------------------------------------------------------------------------------
 * Batch norm over CNHW: for each channel c, statistics over its M = N*H*W values.
 *
 *   training:  mu = mean(x), var = mean((x-mu)^2) (biased), xhat = (x-mu)/sqrt(var+eps), y = gamma*xhat+beta
 *              running_mean = (1-momentum)*running_mean + momentum*mu
 *              running_var  = (1-momentum)*running_var  + momentum*var*M_total/(M_total-1)   (unbiased, as
 * PyTorch) eval:      y = gamma*(x-running_mean)/sqrt(running_var+eps) + beta
 *
 * Sync-BN (dist/): the statistics are sums over the global batch. `reduce` (nullable) is called with the
 * per-channel double sums and must replace them by their sum over all ranks (an MPI_Allreduce); with
 * reduce == NULL the statistics are per rank, which is PyTorch DataParallel behaviour.
 * ---------------------------------------------------------------------------------------------------------
 */
typedef void (*dc_reduce_sum_fn)(double *values, int count, void *ctx);

typedef struct {
    dc_reduce_sum_fn fn; /* NULL: local statistics */
    void *ctx;
} dc_bn_reduce;

/* save_mean/save_rstd [C] are written for backward. When relu != 0 the output is max(y, 0) (fused ReLU).
 * `scratch` holds 2*C doubles. */
void dc_bn_forward_train(int C, int64_t M, const float *x, const float *gamma, const float *beta, float *y,
                         float *save_mean, float *save_rstd, float *running_mean, float *running_var,
                         float momentum, float eps, int relu, const dc_bn_reduce *reduce, double *scratch);

void dc_bn_forward_eval(int C, int64_t M, const float *x, const float *gamma, const float *beta,
                        const float *running_mean, const float *running_var, float eps, int relu, float *y);

/* Backward of training-mode BN (optionally fused with the ReLU that followed it: pass the forward output y
 * and relu = 1, then dy is masked where y <= 0). Needs the forward input x and save_mean/save_rstd.
 *   dxhat = dy*gamma;  dx = rstd/M * (M*dxhat - sum(dxhat) - xhat*sum(dxhat*xhat))
 *   dgamma += sum(dy*xhat);  dbeta += sum(dy)
 * dx may alias dy. `scratch` holds 2*C doubles. */
void dc_bn_backward(int C, int64_t M, const float *x, const float *y, const float *dy, const float *gamma,
                    const float *save_mean, const float *save_rstd, int relu, float *dx, float *dgamma,
                    float *dbeta, const dc_bn_reduce *reduce, double *scratch);

/* ---------------------------------------------------------------------------------------------------------
 */
/* ReLU: y = max(x, 0); backward dx = dy * (y > 0). y may alias x, dx may alias dy. */
void dc_relu_forward(int64_t n, const float *x, float *y);
void dc_relu_backward(int64_t n, const float *y, const float *dy, float *dx);

/* Residual add: y = a + b (y may alias a or b). Backward is the identity on both inputs. */
void dc_add_forward(int64_t n, const float *a, const float *b, float *y);
/* y = relu(a + b), the end of every residual block; backward: dx = dy * (y > 0), shared by both inputs. */
void dc_add_relu_forward(int64_t n, const float *a, const float *b, float *y);

/* ---------------------------------------------------------------------------------------------------------
 */
/* Max pool over CNHW, kernel K, stride S, padding P (padding never wins: it is -inf, as PyTorch).
 * x [C, N, H, W] -> y [C, N, OH, OW], OH = (H + 2P - K)/S + 1. argmax [C*N*OH*OW] records the flat index
 * within each (c, n) plane of the winner (the first maximum in row-major window order, as PyTorch). */
void dc_maxpool_forward(int C, int N, int H, int W, int K, int S, int P, const float *x, float *y,
                        int32_t *argmax);
/* dx is overwritten: zero, then each dy routed to its argmax. */
void dc_maxpool_backward(int C, int N, int H, int W, int K, int S, int P, const float *dy,
                         const int32_t *argmax, float *dx);

/* Global average pool: x [C, N, P] (CNHW) -> y [N, C] row-major (the feature vector of each image). */
void dc_avgpool_forward(int C, int N, int64_t P, const float *x, float *y);
void dc_avgpool_backward(int C, int N, int64_t P, const float *dy, float *dx);

/* ---------------------------------------------------------------------------------------------------------
 */
/* Linear: x [N, D] row-major, W [K, D] (PyTorch layout), b [K] (nullable) -> y [N, K] = x W^T + b.
 * Backward: dW += dy^T x, db += sum_n dy, dx = dy W (overwritten; dx may be NULL). */
void dc_linear_forward(int N, int D, int K, const float *x, const float *W, const float *b, float *y);
void dc_linear_backward(int N, int D, int K, const float *x, const float *W, const float *dy, float *dx,
                        float *dW, float *db);

/* ---------------------------------------------------------------------------------------------------------
 */
/* Softmax cross-entropy over logits [N, K] with integer labels [N].
 *
 * With a per-class logit offset (nullable) the loss is CE(softmax(z + offset), y): offset_j = tau*log(pi_j)
 * gives the logit-adjusted loss, offset_j = log(n_j) Balanced-Softmax.
 *
 * Returns the SUM over the N local samples of -log p_y (double). The gradient is scaled by `grad_scale`,
 * which the trainer sets to 1/global_batch, so that summing gradients over ranks gives the global mean:
 *     dlogits[n, j] = grad_scale * (p_nj - [j == y_n])
 * dlogits may be NULL (evaluation). Labels must be in [0, K); the caller validates data at load time. */
double dc_softmax_ce(int N, int K, const float *logits, const int32_t *labels, const float *offset,
                     float grad_scale, float *dlogits);

#endif /* DC_LAYERS_H */
