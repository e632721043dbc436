// AdamW, clipping and schedule tests: a hand-computed step, a plain per-element
// reference in double over several steps, frozen and no_decay handling.
#include <criterion/criterion.h>
#include <math.h>

#include "train/optim.h"

// Plain AdamW of one element in double, written from the formulas in optim.h.
typedef struct {
  double w, m, v;
} ref_elem;

static void ref_adamw(ref_elem *e, double g, double lr, double b1, double b2, double eps,
                      double wd, bool bc, int t) {
  e->w -= lr * wd * e->w;
  e->m = b1 * e->m + (1 - b1) * g;
  e->v = b2 * e->v + (1 - b2) * g * g;
  double mhat = bc ? e->m / (1 - pow(b1, t)) : e->m;
  double vhat = bc ? e->v / (1 - pow(b2, t)) : e->v;
  e->w -= lr * mhat / (sqrt(vhat) + eps);
}

Test(optim, hand_computed_single_step) {
  // w = 1, g = 0.5, lr 0.1, betas (0.9, 0.999):
  // m = 0.05, v = 0.00025. With bias correction mhat = 0.5, vhat = 0.25, so the
  // step is 0.1 * 0.5 / 0.5 = 0.1; decay 0.1 first scales w by 1 - 0.01.
  // Without bias correction the step is 0.1 * 0.05 / sqrt(0.00025) = 0.316227766.
  struct {
    bool bc;
    double wd, want;
  } cases[] = {{true, 0.0, 0.9}, {true, 0.1, 0.89}, {false, 0.0, 1 - 0.316227766}};
  for (int c = 0; c < 3; c++) {
    tl_params p;
    tl_params_init(&p);
    tl_tensor *w = tl_params_add(&p, "w", 1, (int64_t[]){1}, false);
    tl_params_alloc(&p);
    ((float *)w->data)[0] = 1.0f;
    p.grads[0] = 0.5f;
    tl_adamw opt;
    tl_adamw_init(&opt, 0.9, 0.999, 1e-8, cases[c].wd, cases[c].bc);
    tl_adamw_step(&opt, &p, 0.1);
    cr_assert_float_eq(((float *)w->data)[0], cases[c].want, 1e-6, "case %d: %.9f", c,
                       ((float *)w->data)[0]);
    cr_assert_float_eq(p.m[0], 0.05, 1e-8);
    cr_assert_float_eq(p.v[0], 0.00025, 1e-10);
    cr_assert_eq(opt.t, 1);
    tl_params_free(&p);
  }
}

// Fills x[n] with repeatable values in [-scale, scale].
static void fill(float *x, int64_t n, uint32_t seed, float scale) {
  uint32_t s = seed * 2654435761u + 1;
  for (int64_t i = 0; i < n; i++) {
    s = s * 1664525u + 1013904223u;
    x[i] = scale * ((float)(s >> 8) / 8388608.0f - 1.0f);
  }
}

Test(optim, matches_reference_over_steps) {
  // Awkward sizes (1, a prime, a large block), one no_decay and one frozen.
  tl_params p;
  tl_params_init(&p);
  tl_params_add(&p, "a", 1, (int64_t[]){1}, false);
  tl_params_add(&p, "b", 2, (int64_t[]){7, 13}, true);
  tl_params_add(&p, "c", 2, (int64_t[]){301, 97}, false);
  tl_params_add(&p, "frozen", 1, (int64_t[]){33}, false);
  tl_params_freeze(&p, "frozen", true);
  tl_params_alloc(&p);
  fill(p.values, (int64_t)p.numel, 1, 1.0f);
  float *frozen_before = malloc(33 * sizeof(float));
  tl_tensor *fz = tl_params_find(&p, "frozen");
  memcpy(frozen_before, fz->data, 33 * sizeof(float));

  // Reference copy of every element.
  ref_elem *ref = calloc(p.numel, sizeof *ref);
  for (size_t i = 0; i < p.numel; i++) ref[i].w = p.values[i];

  const double b1 = 0.9, b2 = 0.98, eps = 1e-6, wd = 0.05;
  for (int bc = 0; bc < 2; bc++) {
    tl_adamw opt;
    tl_adamw_init(&opt, b1, b2, eps, wd, bc);
    memset(p.m, 0, p.numel * sizeof(float));
    memset(p.v, 0, p.numel * sizeof(float));
    for (size_t i = 0; i < p.numel; i++) ref[i] = (ref_elem){p.values[i], 0, 0};
    for (int t = 1; t <= 5; t++) {
      fill(p.grads, (int64_t)p.numel, 100 + t, 0.1f * t);
      double lr = 1e-3 * t;
      tl_adamw_step(&opt, &p, lr);
      for (int k = 0; k < p.count; k++) {
        const tl_param_info *info = &p.info[k];
        if (info->frozen) continue;
        for (int64_t j = 0; j < tl_numel(info->tensor); j++) {
          size_t i = info->offset + (size_t)j;
          ref_adamw(&ref[i], p.grads[i], lr, b1, b2, eps, info->no_decay ? 0 : wd, bc, t);
        }
      }
    }
    // f32 against double after 5 steps: agreement to ~1e-6 of the weights' scale.
    for (int k = 0; k < p.count; k++) {
      const tl_param_info *info = &p.info[k];
      for (int64_t j = 0; j < tl_numel(info->tensor); j++) {
        size_t i = info->offset + (size_t)j;
        if (info->frozen) continue;
        cr_assert_float_eq(p.values[i], ref[i].w, 2e-6, "bc %d %s[%ld]: %.8f vs %.8f", bc,
                           info->tensor->name, (long)j, p.values[i], ref[i].w);
      }
    }
  }
  // Frozen: untouched values and moments.
  cr_assert_arr_eq(fz->data, frozen_before, 33 * sizeof(float));
  for (int j = 0; j < 33; j++) {
    cr_assert_eq(p.m[p.info[3].offset + j], 0.0f);
    cr_assert_eq(p.v[p.info[3].offset + j], 0.0f);
  }
  free(ref);
  free(frozen_before);
  tl_params_free(&p);
}

Test(optim, no_decay_params_keep_scale) {
  // Zero gradient: only weight decay moves the weights, and not no_decay ones.
  tl_params p;
  tl_params_init(&p);
  tl_tensor *w = tl_params_add(&p, "w", 1, (int64_t[]){4}, false);
  tl_tensor *b = tl_params_add(&p, "b", 1, (int64_t[]){4}, true);
  tl_params_alloc(&p);
  for (int i = 0; i < 4; i++) ((float *)w->data)[i] = ((float *)b->data)[i] = 2.0f;
  tl_adamw opt;
  tl_adamw_init(&opt, 0.9, 0.999, 1e-8, 0.5, true);
  tl_adamw_step(&opt, &p, 0.1);
  for (int i = 0; i < 4; i++) {
    cr_assert_float_eq(((float *)w->data)[i], 2.0 * (1 - 0.1 * 0.5), 1e-6);
    cr_assert_eq(((float *)b->data)[i], 2.0f);
  }
  tl_params_free(&p);
}

Test(optim, grad_norm_and_clip) {
  tl_params p;
  tl_params_init(&p);
  tl_params_add(&p, "x", 1, (int64_t[]){1}, false);
  tl_params_add(&p, "y", 1, (int64_t[]){1}, true);
  tl_params_add(&p, "z", 1, (int64_t[]){2}, false);
  tl_params_freeze(&p, "z", true);
  tl_params_alloc(&p);
  float *gx = tl_params_find(&p, "x")->grad->data, *gy = tl_params_find(&p, "y")->grad->data;
  float *gz = tl_params_find(&p, "z")->grad->data;
  *gx = 3, *gy = 4, gz[0] = 100, gz[1] = 100; // frozen grads do not count
  cr_assert_float_eq(tl_grad_norm(&p), 5.0, 1e-12);
  cr_assert_float_eq(tl_clip_grad_norm(&p, 10.0), 5.0, 1e-12);
  cr_assert_eq(*gx, 3.0f, "under the limit: unchanged");
  cr_assert_float_eq(tl_clip_grad_norm(&p, 1.0), 5.0, 1e-12);
  cr_assert_float_eq(*gx, 0.6, 1e-6);
  cr_assert_float_eq(*gy, 0.8, 1e-6);
  cr_assert_eq(gz[0], 100.0f);
  cr_assert_float_eq(tl_grad_norm(&p), 1.0, 1e-5);
  cr_assert_float_eq(tl_clip_grad_norm(&p, 0.0), tl_grad_norm(&p), 1e-12, "0: no clipping");

  // A larger block: the norm equals a plain double sum.
  tl_params q;
  tl_params_init(&q);
  tl_params_add(&q, "big", 2, (int64_t[]){1000, 37}, false);
  tl_params_alloc(&q);
  fill(q.grads, 37000, 9, 1.0f);
  double s = 0;
  for (int i = 0; i < 37000; i++) s += (double)q.grads[i] * q.grads[i];
  cr_assert_float_eq(tl_grad_norm(&q), sqrt(s), 1e-9 * sqrt(s));
  tl_params_free(&q);
  tl_params_free(&p);
}

Test(optim, schedule) {
  tl_lr_schedule s = {.kind = TL_LR_LINEAR, .peak = 1.0, .min_lr = 0, .warmup = 4, .total = 14};
  // Warmup: 1/4, 2/4, 3/4, 4/4; then linear from 1 down over the 10 remaining steps.
  cr_assert_float_eq(tl_lr_at(&s, 0), 0.25, 1e-12);
  cr_assert_float_eq(tl_lr_at(&s, 3), 1.0, 1e-12);
  cr_assert_float_eq(tl_lr_at(&s, 4), 1.0, 1e-12);
  cr_assert_float_eq(tl_lr_at(&s, 9), 0.5, 1e-12);
  cr_assert_float_eq(tl_lr_at(&s, 13), 0.1, 1e-12);
  cr_assert_float_eq(tl_lr_at(&s, 20), 0.0, 1e-12);
  s.kind = TL_LR_COSINE;
  s.min_lr = 0.1;
  cr_assert_float_eq(tl_lr_at(&s, 4), 1.0, 1e-12);
  cr_assert_float_eq(tl_lr_at(&s, 9), 0.55, 1e-12); // halfway: (1 + 0.1) / 2
  cr_assert_float_eq(tl_lr_at(&s, 14), 0.1, 1e-12);
  s.kind = TL_LR_CONSTANT;
  cr_assert_float_eq(tl_lr_at(&s, 13), 1.0, 1e-12);
  s.warmup = 0;
  cr_assert_float_eq(tl_lr_at(&s, 0), 1.0, 1e-12);
  tl_lr_kind kind;
  cr_assert_eq(tl_lr_kind_parse("cosine", &kind), TL_OK);
  cr_assert_eq(kind, TL_LR_COSINE);
  cr_assert_eq(tl_lr_kind_parse("step", &kind), TL_ERR);
}
