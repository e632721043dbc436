// CUDA elementwise kernels against the CPU loops of kernels/cpu/elementwise.h:
// binary ops with row broadcast and their backward pieces, activations, type
// conversion. Tolerances: see cuda_check.h (f32 1e-5, bf16 1e-2, relative with
// a floor at the array's mean magnitude).
#include "tests/cuda/cuda_check.h"

#ifndef TL_HAVE_CUDA
Test(cuda_elementwise, skipped) {
  fprintf(stderr, "skipped: no GPU (built without CUDA)\n");
  cr_skip_test("skipped: no GPU (built without CUDA)");
}
#else
#include "kernels/cpu/elementwise.h"
#include "kernels/cuda/tl_cuda.h"

static const tl_dtype DTYPES[] = {TL_F32, TL_BF16};
// (rows, cols) pairs: 1, primes, and sizes off every tile and block multiple.
static const int64_t SHAPES[][2] = {{1, 1}, {1, 7}, {3, 1}, {13, 17}, {37, 255}, {5, 769},
                                    {1031, 3}};
#define NSHAPES (int)(sizeof SHAPES / sizeof SHAPES[0])

static const char *dname(tl_dtype dt) { return dt == TL_F32 ? "f32" : "bf16"; }

Test(cuda_elementwise, binary_same_shape_and_broadcast) {
  REQUIRE_GPU();
  for (int di = 0; di < 2; di++)
    for (int si = 0; si < NSHAPES; si++)
      for (int op = 0; op < 3; op++)
        for (int bcast = 0; bcast < 2; bcast++) {
          tl_dtype dt = DTYPES[di];
          int64_t n = SHAPES[si][0] * SHAPES[si][1], nb = bcast ? SHAPES[si][1] : n;
          float *a = tc_randn(n, 1.0f, 1 + si), *b = tc_randn(nb, 1.0f, 100 + si);
          tc_round(a, n, dt), tc_round(b, nb, dt);
          float *ref = malloc(n * sizeof(float));
          tl_cpu_binary((tl_cpu_binop)op, a, b, ref, n, nb);
          void *da = tc_up(a, n, dt), *db = tc_up(b, nb, dt), *dy = tc_up(a, n, dt);
          tl_cuda_binary((tl_cuda_dtype)dt, (tl_cuda_binop)op, da, db, dy, n, nb);
          float *got = tc_down(dy, n, dt);
          tc_check(tl_fmt("binary op %d %s n=%ld nb=%ld", op, dname(dt), (long)n, (long)nb),
                   got, ref, n, tc_tol(dt));
          free(a), free(b), free(ref), free(got);
          tl_device_free(da), tl_device_free(db), tl_device_free(dy);
        }
}

// The backward pieces: y += s x, y += x * b[i % nb], column sums (weighted or not).
Test(cuda_elementwise, backward_pieces) {
  REQUIRE_GPU();
  for (int di = 0; di < 2; di++)
    for (int si = 0; si < NSHAPES; si++) {
      tl_dtype dt = DTYPES[di];
      int64_t rows = SHAPES[si][0], nb = SHAPES[si][1], n = rows * nb;
      float *x = tc_randn(n, 1.0f, 3 + si), *w = tc_randn(n, 1.0f, 4 + si);
      float *b = tc_randn(nb, 1.0f, 5 + si), *y0 = tc_randn(n, 1.0f, 6 + si);
      float *db0 = tc_randn(nb, 1.0f, 7 + si);
      tc_round(x, n, dt), tc_round(w, n, dt), tc_round(b, nb, dt), tc_round(y0, n, dt);
      tc_round(db0, nb, dt);

      // axpy then mul_acc into the same y, on both sides.
      float *ref = malloc(n * sizeof(float));
      memcpy(ref, y0, n * sizeof(float));
      tl_cpu_axpy(ref, x, -0.75f, n);
      tl_cpu_mul_acc(ref, x, b, n, nb);
      void *dx = tc_up(x, n, dt), *dw = tc_up(w, n, dt), *dbb = tc_up(b, nb, dt);
      void *dy = tc_up(y0, n, dt);
      tl_cuda_axpy((tl_cuda_dtype)dt, dy, dx, -0.75f, n);
      tl_cuda_mul_acc((tl_cuda_dtype)dt, dy, dx, dbb, n, nb);
      float *got = tc_down(dy, n, dt);
      tc_check(tl_fmt("axpy+mul_acc %s %ldx%ld", dname(dt), (long)rows, (long)nb), got, ref, n,
               tc_tol(dt));
      free(got);

      // Column sums: plain (bias grad of add) and weighted (grad of a broadcast mul).
      for (int weighted = 0; weighted < 2; weighted++) {
        float *cref = malloc(nb * sizeof(float));
        memcpy(cref, db0, nb * sizeof(float));
        tl_cpu_colsum_acc(cref, x, weighted ? w : NULL, 0.5f, n, nb);
        void *dcol = tc_up(db0, nb, dt);
        tl_cuda_colsum_acc((tl_cuda_dtype)dt, dcol, dx, weighted ? dw : NULL, 0.5f, n, nb);
        float *cgot = tc_down(dcol, nb, dt);
        tc_check(tl_fmt("colsum w=%d %s %ldx%ld", weighted, dname(dt), (long)rows, (long)nb),
                 cgot, cref, nb, tc_tol(dt));
        free(cref), free(cgot);
        tl_device_free(dcol);
      }

      // scale (out of place).
      tl_cpu_scale(ref, x, 1.5f, n);
      tl_cuda_scale((tl_cuda_dtype)dt, dy, dx, 1.5f, n);
      got = tc_down(dy, n, dt);
      tc_check(tl_fmt("scale %s", dname(dt)), got, ref, n, tc_tol(dt));
      free(got);
      free(x), free(w), free(b), free(y0), free(db0), free(ref);
      tl_device_free(dx), tl_device_free(dw), tl_device_free(dbb), tl_device_free(dy);
    }
}

// Forward and backward of GELU, tanh, SiLU; backward accumulates into a random dx.
typedef void (*cpu_fwd)(float *, const float *, int64_t);
typedef void (*cpu_bwd)(float *, const float *, const float *, int64_t);
typedef void (*gpu_fwd)(tl_cuda_dtype, void *, const void *, int64_t);
typedef void (*gpu_bwd)(tl_cuda_dtype, void *, const void *, const void *, int64_t);

static void check_activation(const char *name, cpu_fwd cf, cpu_bwd cb, gpu_fwd gf, gpu_bwd gb,
                             bool bwd_takes_output) {
  for (int di = 0; di < 2; di++)
    for (int si = 0; si < NSHAPES; si++) {
      tl_dtype dt = DTYPES[di];
      int64_t n = SHAPES[si][0] * SHAPES[si][1];
      float *x = tc_randn(n, 2.0f, 10 + si), *dy = tc_randn(n, 1.0f, 11 + si);
      float *dx0 = tc_randn(n, 1.0f, 12 + si);
      tc_round(x, n, dt), tc_round(dy, n, dt), tc_round(dx0, n, dt);

      // Forward.
      float *yref = malloc(n * sizeof(float));
      cf(yref, x, n);
      void *d_x = tc_up(x, n, dt), *d_y = tc_up(x, n, dt);
      gf((tl_cuda_dtype)dt, d_y, d_x, n);
      float *y = tc_down(d_y, n, dt);
      tc_check(tl_fmt("%s fwd %s n=%ld", name, dname(dt), (long)n), y, yref, n, tc_tol(dt));

      // Backward (tanh's takes the forward output, as the tape saves it).
      float *saved = bwd_takes_output ? y : x;
      float *dxref = malloc(n * sizeof(float));
      memcpy(dxref, dx0, n * sizeof(float));
      cb(dxref, dy, saved, n);
      void *d_dy = tc_up(dy, n, dt), *d_dx = tc_up(dx0, n, dt), *d_s = tc_up(saved, n, dt);
      gb((tl_cuda_dtype)dt, d_dx, d_dy, d_s, n);
      float *dx = tc_down(d_dx, n, dt);
      tc_check(tl_fmt("%s bwd %s n=%ld", name, dname(dt), (long)n), dx, dxref, n, tc_tol(dt));

      free(x), free(dy), free(dx0), free(yref), free(y), free(dxref), free(dx);
      tl_device_free(d_x), tl_device_free(d_y), tl_device_free(d_dy);
      tl_device_free(d_dx), tl_device_free(d_s);
    }
}

Test(cuda_elementwise, gelu) {
  REQUIRE_GPU();
  check_activation("gelu", tl_cpu_gelu, tl_cpu_gelu_bwd, tl_cuda_gelu, tl_cuda_gelu_bwd, false);
}

Test(cuda_elementwise, tanh) {
  REQUIRE_GPU();
  check_activation("tanh", tl_cpu_tanh, tl_cpu_tanh_bwd, tl_cuda_tanh, tl_cuda_tanh_bwd, true);
}

Test(cuda_elementwise, silu) {
  REQUIRE_GPU();
  check_activation("silu", tl_cpu_silu, tl_cpu_silu_bwd, tl_cuda_silu, tl_cuda_silu_bwd, false);
}

Test(cuda_elementwise, swiglu) {
  REQUIRE_GPU();
  for (int di = 0; di < 2; di++)
    for (int si = 0; si < NSHAPES; si++) {
      tl_dtype dt = DTYPES[di];
      int64_t n = SHAPES[si][0] * SHAPES[si][1];
      float *g = tc_randn(n, 2.0f, 20 + si), *u = tc_randn(n, 1.0f, 21 + si);
      float *dy = tc_randn(n, 1.0f, 22 + si), *dg0 = tc_randn(n, 1.0f, 23 + si);
      float *du0 = tc_randn(n, 1.0f, 24 + si);
      tc_round(g, n, dt), tc_round(u, n, dt), tc_round(dy, n, dt);
      tc_round(dg0, n, dt), tc_round(du0, n, dt);
      float *yref = malloc(n * sizeof(float)), *dgref = malloc(n * sizeof(float));
      float *duref = malloc(n * sizeof(float));
      memcpy(dgref, dg0, n * sizeof(float)), memcpy(duref, du0, n * sizeof(float));
      tl_cpu_swiglu(yref, g, u, n);
      tl_cpu_swiglu_bwd(dgref, duref, dy, g, u, n);

      void *d_g = tc_up(g, n, dt), *d_u = tc_up(u, n, dt), *d_dy = tc_up(dy, n, dt);
      void *d_y = tc_up(g, n, dt), *d_dg = tc_up(dg0, n, dt), *d_du = tc_up(du0, n, dt);
      tl_cuda_swiglu((tl_cuda_dtype)dt, d_y, d_g, d_u, n);
      tl_cuda_swiglu_bwd((tl_cuda_dtype)dt, d_dg, d_du, d_dy, d_g, d_u, n);
      float *y = tc_down(d_y, n, dt), *dg = tc_down(d_dg, n, dt), *du = tc_down(d_du, n, dt);
      tc_check(tl_fmt("swiglu fwd %s n=%ld", dname(dt), (long)n), y, yref, n, tc_tol(dt));
      tc_check(tl_fmt("swiglu dgate %s n=%ld", dname(dt), (long)n), dg, dgref, n, tc_tol(dt));
      tc_check(tl_fmt("swiglu dup %s n=%ld", dname(dt), (long)n), du, duref, n, tc_tol(dt));
      free(g), free(u), free(dy), free(dg0), free(du0), free(yref), free(dgref), free(duref);
      free(y), free(dg), free(du);
      tl_device_free(d_g), tl_device_free(d_u), tl_device_free(d_dy);
      tl_device_free(d_y), tl_device_free(d_dg), tl_device_free(d_du);
    }
}

// Strided copy and accumulate (the views' kernels) against tl_cpu_strided_*: a
// transposed [3, 5, 7, 2] source read through permuted strides.
Test(cuda_elementwise, strided_copy_and_add) {
  REQUIRE_GPU();
  const int64_t shape[4] = {3, 5, 7, 2}, n = 3 * 5 * 7 * 2;
  // The source is stored as [7, 5, 3, 2] and read with dims 0 and 2 swapped.
  const int64_t src_stride[4] = {2, 3 * 2, 5 * 3 * 2, 1};
  const int64_t dst_stride[4] = {5 * 7 * 2, 7 * 2, 2, 1};
  for (int di = 0; di < 2; di++)
    for (int acc = 0; acc < 2; acc++) {
      tl_dtype dt = DTYPES[di];
      float *src = tc_randn(n, 1.0f, 70), *dst0 = tc_randn(n, 1.0f, 71);
      tc_round(src, n, dt), tc_round(dst0, n, dt);
      float *ref = malloc(n * 4);
      memcpy(ref, dst0, n * 4);
      (acc ? tl_cpu_strided_add : tl_cpu_strided_copy)(ref, dst_stride, src, src_stride, shape,
                                                        4);
      void *d_src = tc_up(src, n, dt), *d_dst = tc_up(dst0, n, dt);
      tl_cuda_strided_copy((tl_cuda_dtype)dt, d_dst, dst_stride, d_src, src_stride, shape, 4,
                           acc);
      float *got = tc_down(d_dst, n, dt);
      tc_check(tl_fmt("strided %s %s", acc ? "add" : "copy", dname(dt)), got, ref, n,
               tc_tol(dt));
      free(src), free(dst0), free(ref), free(got);
      tl_device_free(d_src), tl_device_free(d_dst);
    }
}

// Sum to a device scalar, and adding a device scalar back (sum/mean backward).
Test(cuda_elementwise, sum_and_add_scalar) {
  REQUIRE_GPU();
  const int64_t sizes[] = {1, 7, 1031, 1000003};
  for (int di = 0; di < 2; di++)
    for (int k = 0; k < 4; k++) {
      tl_dtype dt = DTYPES[di];
      int64_t n = sizes[k];
      float *x = tc_randn(n, 1.0f, 80 + k);
      tc_round(x, n, dt);
      double sum = 0;
      for (int64_t i = 0; i < n; i++) sum += x[i];
      // A sum of n values of mean 0 is about sqrt(n) large: judge it on that scale.
      float ref = (float)(sum / (double)n), got = 0;
      float *d_out = tl_device_malloc(4);
      void *d_x = tc_up(x, n, dt);
      tl_cuda_sum((tl_cuda_dtype)dt, d_out, d_x, n, 1.0f / (float)n);
      tl_device_download(&got, d_out, 4);
      cr_assert(fabs(got - ref) <= TOL_F32 * (fabs(ref) + 1.0 / sqrt((double)n)),
                "mean of %ld: got %.9g want %.9g", (long)n, got, ref);

      float *yref = malloc(n * 4);
      for (int64_t i = 0; i < n; i++) yref[i] = x[i] + 0.5f * got;
      tl_cuda_add_scalar((tl_cuda_dtype)dt, d_x, d_out, 0.5f, n);
      float *y = tc_down(d_x, n, dt);
      tc_check(tl_fmt("add_scalar %s n=%ld", dname(dt), (long)n), y, yref, n, tc_tol(dt));
      free(x), free(yref), free(y);
      tl_device_free(d_out), tl_device_free(d_x);
    }
}

// f32 -> bf16 on the GPU must round exactly as tl_f32_to_bf16 (nearest even),
// including ties, and bf16 -> f32 is exact.
Test(cuda_elementwise, convert_rounds_like_the_cpu) {
  REQUIRE_GPU();
  int64_t n = 4099;
  float *x = tc_randn(n, 3.0f, 30);
  // Exact ties between two bf16 values: the low 16 bits are 0x8000.
  for (int64_t i = 0; i < 64; i++) {
    uint32_t bits = 0x3F800000u + ((uint32_t)i << 16) + 0x8000u;
    memcpy(&x[i], &bits, 4);
  }
  void *d32 = tc_up(x, n, TL_F32), *d16 = tl_device_malloc(n * 2), *back = tl_device_malloc(n * 4);
  tl_cuda_convert(TL_CUDA_BF16, d16, TL_CUDA_F32, d32, n);
  tl_cuda_convert(TL_CUDA_F32, back, TL_CUDA_BF16, d16, n);
  uint16_t *h16 = malloc(n * 2);
  float *h32 = malloc(n * 4);
  tl_device_download(h16, d16, n * 2);
  tl_device_download(h32, back, n * 4);
  for (int64_t i = 0; i < n; i++) {
    cr_assert_eq(h16[i], tl_f32_to_bf16(x[i]), "element %ld: %g -> %04x, cpu %04x", (long)i,
                 x[i], h16[i], tl_f32_to_bf16(x[i]));
    cr_assert_eq(h32[i], tl_bf16_to_f32(h16[i]));
  }
  free(x), free(h16), free(h32);
  tl_device_free(d32), tl_device_free(d16), tl_device_free(back);
}
#endif
