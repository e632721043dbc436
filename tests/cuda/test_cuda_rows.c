// CUDA row kernels against the CPU kernels: softmax and log-softmax
// (kernels/cpu/softmax.h), LayerNorm and RMSNorm (kernels/cpu/norm.h), fused
// cross entropy (kernels/cpu/loss.h), rotary embedding (kernels/cpu/rope.h).
// Forward and backward,
// f32 and bf16, tolerances per cuda_check.h.
#include "tests/cuda/cuda_check.h"

#ifndef TL_HAVE_CUDA
Test(cuda_rows, skipped) {
  fprintf(stderr, "skipped: no GPU (built without CUDA)\n");
  cr_skip_test("skipped: no GPU (built without CUDA)");
}
#else
#include "kernels/cpu/loss.h"
#include "kernels/cpu/norm.h"
#include "kernels/cpu/rope.h"
#include "kernels/cpu/softmax.h"
#include "kernels/cuda/tl_cuda.h"

// (N rows, C columns): 1, primes, below/above the 256-thread row block.
static const int64_t SHAPES[][2] = {{1, 1}, {3, 7}, {37, 255}, {5, 769}, {131, 17}, {2, 3001}};
#define NSHAPES (int)(sizeof SHAPES / sizeof SHAPES[0])
static const char *dname(tl_dtype dt) { return dt == TL_F32 ? "f32" : "bf16"; }

Test(cuda_rows, softmax_and_log_softmax) {
  REQUIRE_GPU();
  for (int di = 0; di < 2; di++)
    for (int si = 0; si < NSHAPES; si++)
      for (int lg = 0; lg < 2; lg++) {
        tl_dtype dt = di ? TL_BF16 : TL_F32;
        int64_t N = SHAPES[si][0], C = SHAPES[si][1], n = N * C;
        float *x = tc_randn(n, 3.0f, 1 + si), *dy = tc_randn(n, 1.0f, 2 + si);
        float *dx0 = tc_randn(n, 1.0f, 3 + si);
        tc_round(x, n, dt), tc_round(dy, n, dt), tc_round(dx0, n, dt);
        float *yref = malloc(n * 4);
        (lg ? tl_cpu_log_softmax_fwd : tl_cpu_softmax_fwd)(x, yref, N, C);
        void *d_x = tc_up(x, n, dt), *d_y = tc_up(x, n, dt);
        (lg ? tl_cuda_log_softmax : tl_cuda_softmax)((tl_cuda_dtype)dt, d_y, d_x, N, C);
        float *y = tc_down(d_y, n, dt);
        tc_check(tl_fmt("%s fwd %s %ldx%ld", lg ? "log_softmax" : "softmax", dname(dt), (long)N,
                        (long)C), y, yref, n, tc_tol(dt));

        // Backward from the GPU's own output, so both sides start equal.
        float *dxref = malloc(n * 4);
        memcpy(dxref, dx0, n * 4);
        (lg ? tl_cpu_log_softmax_bwd : tl_cpu_softmax_bwd)(y, dy, dxref, N, C);
        void *d_dy = tc_up(dy, n, dt), *d_dx = tc_up(dx0, n, dt);
        (lg ? tl_cuda_log_softmax_bwd : tl_cuda_softmax_bwd)((tl_cuda_dtype)dt, d_dx, d_dy, d_y,
                                                             N, C);
        float *dx = tc_down(d_dx, n, dt);
        tc_check(tl_fmt("%s bwd %s %ldx%ld", lg ? "log_softmax" : "softmax", dname(dt), (long)N,
                        (long)C), dx, dxref, n, tc_tol(dt));
        free(x), free(dy), free(dx0), free(yref), free(y), free(dxref), free(dx);
        tl_device_free(d_x), tl_device_free(d_y), tl_device_free(d_dy), tl_device_free(d_dx);
      }
}

// LayerNorm (rms = 0, with and without beta) and RMSNorm (rms = 1).
static void check_norm(tl_dtype dt, int64_t N, int64_t C, int rms, bool with_beta, int seed) {
  int64_t n = N * C;
  float eps = 1e-5f;
  float *x = tc_randn(n, 2.0f, seed), *dy = tc_randn(n, 1.0f, seed + 1);
  float *dx0 = tc_randn(n, 1.0f, seed + 2), *gamma = tc_randn(C, 1.0f, seed + 3);
  float *beta = tc_randn(C, 1.0f, seed + 4), *dg0 = tc_randn(C, 1.0f, seed + 5);
  float *db0 = tc_randn(C, 1.0f, seed + 6);
  for (int64_t i = 0; i < n; i++) x[i] += 0.5f; // a non-zero mean to remove
  tc_round(x, n, dt), tc_round(dy, n, dt), tc_round(dx0, n, dt);

  // CPU forward and backward.
  float *yref = malloc(n * 4), *mref = malloc(N * 4), *rref = malloc(N * 4);
  float *dxref = malloc(n * 4), *dgref = malloc(C * 4), *dbref = malloc(C * 4);
  float *partial = malloc(2 * C * 4);
  memcpy(dxref, dx0, n * 4), memcpy(dgref, dg0, C * 4), memcpy(dbref, db0, C * 4);
  if (rms) {
    tl_cpu_rmsnorm_fwd(x, gamma, yref, rref, N, C, eps);
    tl_cpu_rmsnorm_bwd(x, gamma, rref, dy, dxref, dgref, N, C, partial, 1);
  } else {
    tl_cpu_layernorm_fwd(x, gamma, with_beta ? beta : NULL, yref, mref, rref, N, C, eps);
    tl_cpu_layernorm_bwd(x, gamma, mref, rref, dy, dxref, dgref, dbref, N, C, partial, 1);
  }

  // GPU.
  void *d_x = tc_up(x, n, dt), *d_y = tc_up(x, n, dt), *d_dy = tc_up(dy, n, dt);
  void *d_dx = tc_up(dx0, n, dt);
  float *d_g = tc_up(gamma, C, TL_F32), *d_b = tc_up(beta, C, TL_F32);
  float *d_dg = tc_up(dg0, C, TL_F32), *d_db = tc_up(db0, C, TL_F32);
  float *d_mean = tl_device_malloc(N * 4), *d_rstd = tl_device_malloc(N * 4);
  tl_cuda_dtype cdt = (tl_cuda_dtype)dt;
  if (rms) {
    tl_cuda_rmsnorm(cdt, d_y, d_rstd, d_x, d_g, N, C, eps);
    tl_cuda_rmsnorm_bwd(cdt, d_dx, d_dg, d_dy, d_x, d_g, d_rstd, N, C);
  } else {
    tl_cuda_layernorm(cdt, d_y, d_mean, d_rstd, d_x, d_g, with_beta ? d_b : NULL, N, C, eps);
    tl_cuda_layernorm_bwd(cdt, d_dx, d_dg, d_db, d_dy, d_x, d_g, d_mean, d_rstd, N, C);
  }
  float *y = tc_down(d_y, n, dt), *rstd = tc_down(d_rstd, N, TL_F32);
  float *dx = tc_down(d_dx, n, dt), *dg = tc_down(d_dg, C, TL_F32);
  float *db = tc_down(d_db, C, TL_F32);
  const char *name = tl_fmt("%s %s %ldx%ld", rms ? "rmsnorm" : "layernorm", dname(dt), (long)N,
                            (long)C);
  char what[128];
  snprintf(what, sizeof what, "%s", name);
  double tol = tc_tol(dt);
  tc_check(tl_fmt("%s y", what), y, yref, n, tol);
  tc_check(tl_fmt("%s rstd", what), rstd, rref, N, tol);
  tc_check(tl_fmt("%s dx", what), dx, dxref, n, tol);
  tc_check(tl_fmt("%s dgamma", what), dg, dgref, C, tol);
  if (!rms) tc_check(tl_fmt("%s dbeta", what), db, dbref, C, tol);

  free(x), free(dy), free(dx0), free(gamma), free(beta), free(dg0), free(db0);
  free(yref), free(mref), free(rref), free(dxref), free(dgref), free(dbref), free(partial);
  free(y), free(rstd), free(dx), free(dg), free(db);
  tl_device_free(d_x), tl_device_free(d_y), tl_device_free(d_dy), tl_device_free(d_dx);
  tl_device_free(d_g), tl_device_free(d_b), tl_device_free(d_dg), tl_device_free(d_db);
  tl_device_free(d_mean), tl_device_free(d_rstd);
}

Test(cuda_rows, layernorm) {
  REQUIRE_GPU();
  for (int di = 0; di < 2; di++)
    for (int si = 0; si < NSHAPES; si++)
      for (int wb = 0; wb < 2; wb++)
        check_norm(di ? TL_BF16 : TL_F32, SHAPES[si][0], SHAPES[si][1], 0, wb, 10 + si);
}

Test(cuda_rows, rmsnorm) {
  REQUIRE_GPU();
  for (int di = 0; di < 2; di++)
    for (int si = 0; si < NSHAPES; si++)
      check_norm(di ? TL_BF16 : TL_F32, SHAPES[si][0], SHAPES[si][1], 1, false, 20 + si);
}

// Fused cross entropy, with ignored rows (and a batch where every row is ignored).
Test(cuda_rows, cross_entropy) {
  REQUIRE_GPU();
  const int64_t shapes[][2] = {{1, 1}, {1, 5}, {7, 13}, {131, 1031}, {3, 30522}};
  const int ignore = -100;
  for (int di = 0; di < 2; di++)
    for (int si = 0; si < 5; si++)
      for (int all_ignored = 0; all_ignored < 2; all_ignored++) {
        tl_dtype dt = di ? TL_BF16 : TL_F32;
        int64_t N = shapes[si][0], V = shapes[si][1], n = N * V;
        float *x = tc_randn(n, 3.0f, 30 + si), *dx0 = tc_randn(n, 1.0f, 31 + si);
        tc_round(x, n, dt), tc_round(dx0, n, dt);
        int32_t *tg = malloc(N * 4);
        for (int64_t r = 0; r < N; r++)
          tg[r] = all_ignored || (r % 3 == 1) ? ignore : (int32_t)((r * 7919) % V);

        // CPU: loss = sum / count, dlogits with upstream gradient 1.
        float *lref = malloc(N * 4), *dxref = malloc(n * 4);
        int64_t count = 0;
        double sum = tl_cpu_cross_entropy_fwd(x, tg, lref, N, V, ignore, &count);
        float loss_ref = count ? (float)(sum / (double)count) : 0.0f;
        memcpy(dxref, dx0, n * 4);
        if (count) tl_cpu_cross_entropy_bwd(x, tg, lref, N, V, ignore, 1.0f / count, dxref);

        // GPU.
        void *d_x = tc_up(x, n, dt), *d_dx = tc_up(dx0, n, dt);
        int32_t *d_t = tc_up_i32(tg, N);
        float one = 1.0f, *d_one = tc_up(&one, 1, TL_F32);
        float *d_loss = tl_device_malloc(4), *d_count = tl_device_malloc(4);
        float *d_lse = tl_device_malloc(N * 4);
        tl_cuda_cross_entropy((tl_cuda_dtype)dt, d_loss, d_count, d_lse, d_x, d_t, N, V, ignore);
        tl_cuda_cross_entropy_bwd((tl_cuda_dtype)dt, d_dx, d_one, d_count, d_lse, d_x, d_t, N, V,
                                  ignore);
        float loss = 0, cnt = 0;
        tl_device_download(&loss, d_loss, 4);
        tl_device_download(&cnt, d_count, 4);
        float *lse = tc_down(d_lse, N, TL_F32), *dx = tc_down(d_dx, n, dt);
        cr_assert_eq((int64_t)cnt, count, "count %g, cpu %ld", cnt, (long)count);
        // The loss and lse are f32 whatever the logits' dtype (inputs rounded alike).
        tc_check(tl_fmt("ce loss V=%ld", (long)V), &loss, &loss_ref, 1, TOL_F32);
        tc_check(tl_fmt("ce lse V=%ld", (long)V), lse, lref, N, TOL_F32);
        tc_check(tl_fmt("ce dlogits %s V=%ld", dname(dt), (long)V), dx, dxref, n, tc_tol(dt));
        cr_assert_eq(tl_cuda_take_bad_index(), -1);
        free(x), free(dx0), free(tg), free(lref), free(dxref), free(lse), free(dx);
        tl_device_free(d_x), tl_device_free(d_dx), tl_device_free(d_t), tl_device_free(d_one);
        tl_device_free(d_loss), tl_device_free(d_count), tl_device_free(d_lse);
      }
}

// Rotary embedding against kernels/cpu/rope.h: the f32 angle table of
// transformers, then the rotation (backward: the inverse rotation, accumulated).
static void rope_ref(float *y, const float *x, int64_t BH, int64_t T, int64_t D, int64_t pos0,
                     float theta, bool inverse, bool accumulate) {
  float *c = malloc((T * D / 2 + 1) * 4), *s = malloc((T * D / 2 + 1) * 4);
  tl_cpu_rope_table(c, s, T, D, pos0, theta);
  const int64_t stride[3] = {0, T * D, D}; // BH folded into the head dim, B = 1
  tl_cpu_rope(x, stride, y, 1, BH, T, D, c, s, inverse, accumulate);
  free(c), free(s);
}

Test(cuda_rows, rope) {
  REQUIRE_GPU();
  const int64_t shapes[][3] = {{1, 1, 2}, {3, 7, 6}, {2, 131, 64}, {5, 17, 128}};
  const int64_t pos0s[] = {0, 5, 4093};
  for (int di = 0; di < 2; di++)
    for (int si = 0; si < 4; si++)
      for (int pi = 0; pi < 3; pi++) {
        tl_dtype dt = di ? TL_BF16 : TL_F32;
        int64_t BH = shapes[si][0], T = shapes[si][1], D = shapes[si][2], n = BH * T * D;
        float *x = tc_randn(n, 1.0f, 40 + si), *dy = tc_randn(n, 1.0f, 41 + si);
        float *dx0 = tc_randn(n, 1.0f, 42 + si);
        tc_round(x, n, dt), tc_round(dy, n, dt), tc_round(dx0, n, dt);
        float *yref = malloc(n * 4), *dxref = malloc(n * 4);
        memcpy(dxref, dx0, n * 4);
        rope_ref(yref, x, BH, T, D, pos0s[pi], 10000.0f, false, false);
        rope_ref(dxref, dy, BH, T, D, pos0s[pi], 10000.0f, true, true);

        void *d_x = tc_up(x, n, dt), *d_y = tc_up(x, n, dt), *d_dy = tc_up(dy, n, dt);
        void *d_dx = tc_up(dx0, n, dt);
        tl_cuda_rope((tl_cuda_dtype)dt, d_y, d_x, BH, T, D, pos0s[pi], 10000.0f);
        tl_cuda_rope_bwd((tl_cuda_dtype)dt, d_dx, d_dy, BH, T, D, pos0s[pi], 10000.0f);
        float *y = tc_down(d_y, n, dt), *dx = tc_down(d_dx, n, dt);
        tc_check(tl_fmt("rope fwd %s D=%ld pos0=%ld", dname(dt), (long)D, (long)pos0s[pi]), y,
                 yref, n, tc_tol(dt));
        tc_check(tl_fmt("rope bwd %s D=%ld pos0=%ld", dname(dt), (long)D, (long)pos0s[pi]), dx,
                 dxref, n, tc_tol(dt));
        free(x), free(dy), free(dx0), free(yref), free(dxref), free(y), free(dx);
        tl_device_free(d_x), tl_device_free(d_y), tl_device_free(d_dy), tl_device_free(d_dx);
      }
}
#endif
