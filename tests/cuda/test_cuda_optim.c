// CUDA AdamW over the flat parameter buffer, the gradient norm, and the device
// parameter block of core/device.h, against a double-precision AdamW written
// here from PyTorch's formula (decoupled decay on the old weight, bias
// corrections 1 - beta^t). Tolerance f32 1e-5 relative (cuda_check.h).
#include "tests/cuda/cuda_check.h"

#ifndef TL_HAVE_CUDA
Test(cuda_optim, skipped) {
  fprintf(stderr, "skipped: no GPU (built without CUDA)\n");
  cr_skip_test("skipped: no GPU (built without CUDA)");
}

// Without CUDA the device API must fail politely, naming the reason.
Test(cuda_optim, device_api_reports_built_without_cuda) {
  cr_assert(!tl_device_available());
  cr_assert_eq(tl_device_init(0), TL_ERR);
  cr_assert(strstr(tl_last_error(), "built without CUDA"), "%s", tl_last_error());
  tl_arena a;
  cr_assert_eq(tl_device_arena_init(&a, 1024), TL_ERR);
}
#else
#include "kernels/cuda/tl_cuda.h"

typedef struct {
  double lr, b1, b2, eps, wd, gscale;
} hp_t;

// One AdamW step on element i, in double.
static void adamw_ref(double *w, double *m, double *v, double g, const hp_t *h, int64_t t,
                      bool decay) {
  g *= h->gscale;
  *m = h->b1 * *m + (1 - h->b1) * g;
  *v = h->b2 * *v + (1 - h->b2) * g * g;
  double mhat = *m / (1 - pow(h->b1, (double)t)), vhat = *v / (1 - pow(h->b2, (double)t));
  *w -= h->lr * ((decay ? h->wd : 0.0) * *w + mhat / (sqrt(vhat) + h->eps));
}

Test(cuda_optim, adamw_with_segments_matches_reference) {
  REQUIRE_GPU();
  // Segments: [0, 5) decayed, [5, 9) no decay, [9, 1000) frozen, [1000, n) decayed.
  const int64_t n = 4099;
  int64_t seg_start[4] = {0, 5, 9, 1000};
  uint8_t seg_flags[4] = {0, TL_CUDA_SEG_NO_DECAY, TL_CUDA_SEG_FROZEN, 0};
  hp_t h = {1e-3, 0.9, 0.999, 1e-8, 0.01, 0.5};
  float *w = tc_randn(n, 1.0f, 1), *m = tc_randn(n, 0.1f, 2), *v = tc_randn(n, 0.1f, 3);
  for (int64_t i = 0; i < n; i++) v[i] = v[i] * v[i]; // second moments are >= 0
  double *rw = malloc(n * 8), *rm = malloc(n * 8), *rv = malloc(n * 8);
  for (int64_t i = 0; i < n; i++) rw[i] = w[i], rm[i] = m[i], rv[i] = v[i];

  float *d_w = tc_up(w, n, TL_F32), *d_m = tc_up(m, n, TL_F32), *d_v = tc_up(v, n, TL_F32);
  int64_t *d_seg = tl_device_malloc(sizeof seg_start);
  uint8_t *d_flags = tl_device_malloc(sizeof seg_flags);
  tl_device_upload(d_seg, seg_start, sizeof seg_start);
  tl_device_upload(d_flags, seg_flags, sizeof seg_flags);
  uint16_t *d_w16 = tl_device_malloc(n * 2);

  // Three steps with fresh gradients each.
  for (int64_t t = 1; t <= 3; t++) {
    float *g = tc_randn(n, 1.0f, 10 + t);
    for (int64_t i = 0; i < n; i++) {
      int k = i < 5 ? 0 : i < 9 ? 1 : i < 1000 ? 2 : 3;
      if (seg_flags[k] & TL_CUDA_SEG_FROZEN) continue;
      adamw_ref(&rw[i], &rm[i], &rv[i], g[i], &h, t, !(seg_flags[k] & TL_CUDA_SEG_NO_DECAY));
    }
    float *d_g = tc_up(g, n, TL_F32);
    tl_cuda_adamw_hp hp = {(float)h.lr, (float)h.b1, (float)h.b2, (float)h.eps, (float)h.wd,
                           (float)h.gscale, t, false};
    tl_cuda_adamw(d_w, d_g, d_m, d_v, n, &hp, d_seg, d_flags, 4, d_w16);
    free(g);
    tl_device_free(d_g);
  }
  float *gw = tc_down(d_w, n, TL_F32), *gm = tc_down(d_m, n, TL_F32);
  float *gv = tc_down(d_v, n, TL_F32), *g16 = tc_down(d_w16, n, TL_BF16);
  float *fw = malloc(n * 4), *fm = malloc(n * 4), *fv = malloc(n * 4), *f16 = malloc(n * 4);
  for (int64_t i = 0; i < n; i++) {
    fw[i] = (float)rw[i], fm[i] = (float)rm[i], fv[i] = (float)rv[i];
    f16[i] = tl_bf16_to_f32(tl_f32_to_bf16(gw[i])); // the copy rounds the GPU's weights
  }
  tc_check("adamw w", gw, fw, n, TOL_F32);
  tc_check("adamw m", gm, fm, n, TOL_F32);
  tc_check("adamw v", gv, fv, n, TOL_F32);
  tc_check("adamw bf16 copy", g16, f16, n, 0.0);
  for (int64_t i = 9; i < 1000; i++) cr_assert_eq(gw[i], w[i], "frozen element %ld moved", (long)i);
  free(w), free(m), free(v), free(rw), free(rm), free(rv);
  free(gw), free(gm), free(gv), free(g16), free(fw), free(fm), free(fv), free(f16);
  tl_device_free(d_w), tl_device_free(d_m), tl_device_free(d_v);
  tl_device_free(d_seg), tl_device_free(d_flags), tl_device_free(d_w16);
}

Test(cuda_optim, sumsq) {
  REQUIRE_GPU();
  const int64_t sizes[] = {1, 7, 1031, 1000003};
  for (int k = 0; k < 4; k++) {
    int64_t n = sizes[k];
    float *x = tc_randn(n, 1.0f, 40 + k);
    double ref = 0;
    for (int64_t i = 0; i < n; i++) ref += (double)x[i] * x[i];
    float *d_x = tc_up(x, n, TL_F32), *d_out = tl_device_malloc(4), got = 0, fref = (float)ref;
    tl_cuda_sumsq(d_out, d_x, n);
    tl_device_download(&got, d_out, 4);
    tc_check(tl_fmt("sumsq n=%ld", (long)n), &got, &fref, 1, TOL_F32);
    free(x);
    tl_device_free(d_x), tl_device_free(d_out);
  }
}

// The device parameter block: attach points the tensors at the GPU, a step there
// equals the reference, detach brings values and moments home.
Test(cuda_optim, device_params_attach_step_detach) {
  REQUIRE_GPU();
  tl_params p;
  tl_params_init(&p);
  tl_tensor *w = tl_params_add(&p, "w", 2, (int64_t[]){7, 13}, false);
  tl_tensor *b = tl_params_add(&p, "b", 1, (int64_t[]){13}, true);
  tl_tensor *f = tl_params_add(&p, "frozen", 1, (int64_t[]){5}, false);
  tl_params_freeze(&p, "frozen", true);
  tl_params_alloc(&p);
  float *init = tc_randn((int64_t)p.numel, 1.0f, 7);
  memcpy(p.values, init, p.numel * sizeof(float));

  tl_device_params d;
  cr_assert_eq(tl_device_params_attach(&d, &p, true), TL_OK, "%s", tl_last_error());
  cr_assert_eq(w->device, TL_CUDA);
  cr_assert_eq(w->grad->device, TL_CUDA);
  cr_assert_eq(w->data, (void *)(d.values + 0));

  // Gradients written straight into the device grads region.
  float *g = tc_randn((int64_t)p.numel, 1.0f, 8);
  tl_device_upload(d.grads, g, p.numel * sizeof(float));
  double sq = 0;
  for (size_t i = 0; i < p.numel; i++) sq += (double)g[i] * g[i];
  float norm = tl_device_grad_norm(&d), fnorm = (float)sqrt(sq);
  tc_check("grad norm", &norm, &fnorm, 1, TOL_F32);
  tl_device_adamw_step(&d, 1e-2f, 0.9f, 0.999f, 1e-8f, 0.1f, 1.0f, 1, true);
  tl_device_params_detach(&d, &p);
  cr_assert_eq(w->device, TL_CPU);
  cr_assert_eq(w->data, (void *)p.values);

  // The reference over each parameter's own elements.
  hp_t h = {1e-2, 0.9, 0.999, 1e-8, 0.1, 1.0};
  tl_tensor *params[3] = {w, b, f};
  for (int k = 0; k < 3; k++) {
    int64_t n = tl_numel(params[k]);
    size_t off = p.info[k].offset;
    float *ref = malloc(n * 4);
    for (int64_t i = 0; i < n; i++) {
      double rw = init[off + i], rm = 0, rv = 0;
      if (!p.info[k].frozen) adamw_ref(&rw, &rm, &rv, g[off + i], &h, 1, !p.info[k].no_decay);
      ref[i] = (float)rw;
    }
    tc_check(tl_fmt("param %s after a device step", params[k]->name), p.values + off, ref, n,
             TOL_F32);
    free(ref);
  }
  free(init), free(g);
  tl_params_free(&p);
}

// Device arena and tensors: up, down, same bytes.
Test(cuda_optim, device_arena_round_trip) {
  REQUIRE_GPU();
  tl_arena host, dev;
  tl_arena_init(&host, 1 << 20);
  tl_set_arena(&host);
  cr_assert_eq(tl_device_arena_init(&dev, 1 << 20), TL_OK, "%s", tl_last_error());
  float *x = tc_randn(3 * 37, 1.0f, 9);
  tl_tensor *hx = tl_from_data(TL_F32, 2, (int64_t[]){3, 37}, x);
  tl_tensor *dx = tl_to_device(&dev, hx);
  cr_assert_eq(dx->device, TL_CUDA);
  tl_tensor *back = tl_to_host(dx);
  cr_assert(memcmp(back->data, x, sizeof(float) * 3 * 37) == 0);
  tl_tensor *z = tl_device_zeros(&dev, TL_BF16, 1, (int64_t[]){11});
  uint16_t zh[11] = {1};
  tl_device_download(zh, z->data, sizeof zh);
  for (int i = 0; i < 11; i++) cr_assert_eq(zh[i], 0);
  cr_assert(dev.high_water >= 3 * 37 * 4);
  free(x);
  tl_device_arena_free(&dev);
  tl_arena_free(&host);
}
#endif
