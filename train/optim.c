// optim.c: AdamW, gradient norm and clipping over the flat parameter block; the
// learning-rate schedule.
#include "train/optim.h"

#include <math.h>
#include <omp.h>
#include <string.h>

void tl_adamw_init(tl_adamw *opt, double beta1, double beta2, double eps, double weight_decay,
                   bool bias_correction) {
  opt->beta1 = beta1;
  opt->beta2 = beta2;
  opt->eps = eps;
  opt->weight_decay = weight_decay;
  opt->bias_correction = bias_correction;
  opt->t = 0;
}

void tl_adamw_step(tl_adamw *opt, tl_params *p, double lr) {
  TL_ASSERT(p->allocated);
  opt->t++;

  // Scalars of this update, in f32 like the moments (c1, c2: bias corrections).
  double c1 = opt->bias_correction ? 1.0 - pow(opt->beta1, (double)opt->t) : 1.0;
  double c2 = opt->bias_correction ? 1.0 - pow(opt->beta2, (double)opt->t) : 1.0;
  // 1 - beta in double first: 1 - 0.999f would be off by 5e-5 relative.
  const float b1 = (float)opt->beta1, b2 = (float)opt->beta2, eps = (float)opt->eps;
  const float omb1 = (float)(1.0 - opt->beta1), omb2 = (float)(1.0 - opt->beta2);
  const float step_size = (float)(lr / c1), sqrt_c2 = (float)sqrt(c2);
  const float keep_decay = (float)(1.0 - lr * opt->weight_decay);

  // One parallel region; each parameter's elements split statically over the
  // threads without a barrier between parameters.
#pragma omp parallel
  for (int k = 0; k < p->count; k++) {
    const tl_param_info *info = &p->info[k];
    if (info->frozen) continue;
    int64_t n = tl_numel(info->tensor);
    float *restrict w = p->values + info->offset;
    const float *restrict g = p->grads + info->offset;
    float *restrict m = p->m + info->offset;
    float *restrict v = p->v + info->offset;
    const float keep = info->no_decay ? 1.0f : keep_decay;
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < n; i++) {
      float mi = b1 * m[i] + omb1 * g[i];
      float vi = b2 * v[i] + omb2 * g[i] * g[i];
      m[i] = mi;
      v[i] = vi;
      w[i] = w[i] * keep - step_size * mi / (sqrtf(vi) / sqrt_c2 + eps);
    }
  }
}

double tl_grad_norm(const tl_params *p) {
  // Per-thread partial sums added in thread order: the same bits every run.
  int nt = omp_get_max_threads();
  double partial[nt];
  memset(partial, 0, sizeof partial);
#pragma omp parallel num_threads(nt)
  {
    double s = 0;
    for (int k = 0; k < p->count; k++) {
      if (p->info[k].frozen) continue;
      int64_t n = tl_numel(p->info[k].tensor);
      const float *g = p->grads + p->info[k].offset;
#pragma omp for schedule(static) nowait
      for (int64_t i = 0; i < n; i++) s += (double)g[i] * g[i];
    }
    partial[omp_get_thread_num()] = s;
  }
  double total = 0;
  for (int t = 0; t < nt; t++) total += partial[t];
  return sqrt(total);
}

double tl_clip_grad_norm(tl_params *p, double max_norm) {
  double norm = tl_grad_norm(p);
  if (max_norm <= 0 || !isfinite(norm) || norm <= max_norm) return norm;

  // PyTorch's factor: max_norm / (norm + 1e-6).
  const float scale = (float)(max_norm / (norm + 1e-6));
#pragma omp parallel
  for (int k = 0; k < p->count; k++) {
    if (p->info[k].frozen) continue;
    int64_t n = tl_numel(p->info[k].tensor);
    float *g = p->grads + p->info[k].offset;
#pragma omp for schedule(static) nowait
    for (int64_t i = 0; i < n; i++) g[i] *= scale;
  }
  return norm;
}

tl_status tl_lr_kind_parse(const char *name, tl_lr_kind *out) {
  if (!strcmp(name, "linear")) *out = TL_LR_LINEAR;
  else if (!strcmp(name, "cosine")) *out = TL_LR_COSINE;
  else if (!strcmp(name, "constant")) *out = TL_LR_CONSTANT;
  else {
    tl_set_error("unknown lr schedule '%s' (expected linear, cosine or constant)", name);
    return TL_ERR;
  }
  return TL_OK;
}

double tl_lr_at(const tl_lr_schedule *s, int64_t step) {
  if (step < s->warmup) return s->peak * (double)(step + 1) / (double)s->warmup;
  if (s->kind == TL_LR_CONSTANT) return s->peak;

  // Fraction of the decay done, in [0, 1]; past the end the floor holds.
  int64_t span = s->total - s->warmup;
  double done = span > 0 ? (double)(step - s->warmup) / (double)span : 1.0;
  if (done > 1) done = 1;
  double shape = s->kind == TL_LR_LINEAR ? 1.0 - done : 0.5 * (1.0 + cos(M_PI * done));
  return s->min_lr + (s->peak - s->min_lr) * shape;
}
