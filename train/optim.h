// optim.h: AdamW over the flat parameter block, global gradient-norm clipping
// and the learning-rate schedule.
//
// The block (core/tensor.h, tl_params) holds values, grads and the two moments in
// four equal regions, so the update is one fused loop over a few contiguous
// ranges (consecutive parameters with the same flags merged): no per-tensor
// calls, no allocation. Frozen parameters are skipped entirely; no_decay ones
// (biases, norms) get no weight decay.
//
// Update for one element, with t the 1-based update count (PyTorch's AdamW):
//   p -= lr * weight_decay * p                       (decoupled; skipped: no_decay)
//   m  = beta1 * m + (1 - beta1) * g
//   v  = beta2 * v + (1 - beta2) * g^2
//   p -= lr * (m / c1) / (sqrt(v / c2) + eps)
// with c1 = 1 - beta1^t, c2 = 1 - beta2^t when bias correction is on, else 1
// (the ET-BERT code's choice, kept for the compat preset).
//
// Reductions are summed per thread in a fixed order, so with the same thread
// count a run and its resumed twin get bit-identical norms and weights.
#pragma once
#include "core/tensor.h"

typedef struct tl_adamw {
  double beta1, beta2;
  double eps;
  double weight_decay;
  bool bias_correction;
  int64_t t; // updates done so far (saved in checkpoints for bias correction)
} tl_adamw;

// Sets the hyper-parameters and t = 0.
void tl_adamw_init(tl_adamw *opt, double beta1, double beta2, double eps, double weight_decay,
                   bool bias_correction);

// One AdamW update of every trainable parameter of p with learning rate lr,
// from the gradients in p->grads. Increments opt->t. Does not zero the grads.
void tl_adamw_step(tl_adamw *opt, tl_params *p, double lr);

// The L2 norm of all trainable gradients together (frozen ones excluded),
// accumulated in double.
double tl_grad_norm(const tl_params *p);

// Scales the trainable gradients by max_norm / norm when their global norm
// exceeds max_norm (max_norm <= 0: never). Returns the norm before clipping.
// Non-finite norms are returned as they are and leave the grads untouched.
double tl_clip_grad_norm(tl_params *p, double max_norm);

typedef enum { TL_LR_LINEAR, TL_LR_COSINE, TL_LR_CONSTANT } tl_lr_kind;

typedef struct tl_lr_schedule {
  tl_lr_kind kind;
  double peak;    // lr at the end of warmup
  double min_lr;  // floor of the decay
  int64_t warmup; // steps of linear warmup
  int64_t total;  // steps in the whole run
} tl_lr_schedule;

// Parses "linear", "cosine" or "constant"; returns TL_ERR (with a message) else.
tl_status tl_lr_kind_parse(const char *name, tl_lr_kind *out);

// The lr for 0-based update `step`: warmup peak * (step + 1) / warmup (the first
// update already moves), then from peak down to min_lr over the remaining steps
// (linear or half-cosine), or constant.
double tl_lr_at(const tl_lr_schedule *s, int64_t step);
