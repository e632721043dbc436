// CUDA fused attention (forward, backward) against a naive double-precision
// attention written here: full score rows, explicit softmax, key padding mask,
// causal mask, grouped-query heads, dropout with the counter mapping of
// tl_cuda.h drawn through core/rng.h. Tolerances: cuda_check.h (f32 1e-5,
// bf16 1e-2, relative with a floor at the array's mean magnitude).
#include "tests/cuda/cuda_check.h"

#ifndef TL_HAVE_CUDA
Test(cuda_attention, skipped) {
  fprintf(stderr, "skipped: no GPU (built without CUDA)\n");
  cr_skip_test("skipped: no GPU (built without CUDA)");
}
#else
#include "core/rng.h"
#include "kernels/cuda/tl_cuda.h"

typedef struct {
  int64_t B, Hq, Hkv, T, S, D;
  bool causal, mask, dead_batch; // dead_batch: batch 1 has every key padded
  float dropout;
} cfg;

// 1, primes, sizes off the 32-row tile and the 8-row block, D up to 256.
static const cfg CASES[] = {
    {1, 1, 1, 1, 1, 1, false, false, false, 0.0f},
    {2, 2, 1, 7, 7, 5, true, false, false, 0.0f},
    {1, 4, 2, 33, 33, 64, false, true, false, 0.0f},
    {2, 3, 3, 13, 37, 32, false, true, true, 0.0f},
    {1, 2, 1, 70, 70, 128, true, true, false, 0.0f},
    {2, 4, 1, 41, 41, 64, true, false, false, 0.25f},
    {1, 1, 1, 5, 9, 256, false, false, false, 0.0f},
    {1, 2, 2, 97, 97, 80, false, true, false, 0.1f},
};
#define NCASES (int)(sizeof CASES / sizeof CASES[0])

static bool ref_visible(const cfg *c, const int32_t *mask, int64_t b, int64_t t, int64_t s) {
  if (c->causal && s > t) return false;
  return !mask || mask[b * c->S + s];
}

static double ref_drop(const cfg *c, int64_t b, int64_t h, int64_t t, int64_t s) {
  if (c->dropout <= 0.0f) return 1.0;
  uint64_t idx = (uint64_t)(((b * c->Hq + h) * c->T + t) * c->S + s);
  return tl_rng_uniform(7, 1000 + idx) >= c->dropout ? 1.0 / (1.0 - c->dropout) : 0.0;
}

// Probabilities of one query row (P[s], 0 where invisible); returns false if
// the row sees no key.
static bool ref_probs(const cfg *c, const float *q, const float *k, const int32_t *mask,
                      int64_t b, int64_t h, int64_t t, double scale, double *P) {
  int64_t g = h / (c->Hq / c->Hkv), D = c->D;
  const float *qr = q + ((b * c->Hq + h) * c->T + t) * D;
  double mx = -INFINITY;
  for (int64_t s = 0; s < c->S; s++) {
    P[s] = -INFINITY;
    if (!ref_visible(c, mask, b, t, s)) continue;
    const float *kr = k + ((b * c->Hkv + g) * c->S + s) * D;
    double acc = 0;
    for (int64_t d = 0; d < D; d++) acc += (double)qr[d] * kr[d];
    P[s] = acc * scale;
    if (P[s] > mx) mx = P[s];
  }
  if (mx == -INFINITY) {
    for (int64_t s = 0; s < c->S; s++) P[s] = 0;
    return false;
  }
  double sum = 0;
  for (int64_t s = 0; s < c->S; s++) sum += P[s] = P[s] == -INFINITY ? 0 : exp(P[s] - mx);
  for (int64_t s = 0; s < c->S; s++) P[s] /= sum;
  return true;
}

// Forward o and backward dq, dk, dv (all accumulated from zero) in double.
// delta uses the given O (the GPU's, as the kernel does).
static void ref_attention(const cfg *c, const float *q, const float *k, const float *v,
                          const int32_t *mask, const float *dout, const float *o_gpu, double *o,
                          double *dq, double *dk, double *dv) {
  int64_t D = c->D, S = c->S;
  double scale = 1.0 / sqrt((double)D);
  double *P = malloc(S * 8), *dP = malloc(S * 8);
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t h = 0; h < c->Hq; h++)
      for (int64_t t = 0; t < c->T; t++) {
        int64_t g = h / (c->Hq / c->Hkv), row = (b * c->Hq + h) * c->T + t;
        bool any = ref_probs(c, q, k, mask, b, h, t, scale, P);
        const float *vb = v + (b * c->Hkv + g) * S * D, *kb = k + (b * c->Hkv + g) * S * D;
        for (int64_t d = 0; d < D; d++) {
          double acc = 0;
          for (int64_t s = 0; s < S; s++) acc += P[s] * ref_drop(c, b, h, t, s) * vb[s * D + d];
          o[row * D + d] = acc;
        }
        if (!any) continue;

        // dP = (dO . v) * drop, dS = P (dP - delta), delta = dO . O.
        double delta = 0;
        for (int64_t d = 0; d < D; d++) delta += (double)dout[row * D + d] * o_gpu[row * D + d];
        for (int64_t s = 0; s < S; s++) {
          double acc = 0;
          for (int64_t d = 0; d < D; d++) acc += (double)dout[row * D + d] * vb[s * D + d];
          dP[s] = P[s] * (acc * ref_drop(c, b, h, t, s) - delta);
        }
        for (int64_t s = 0; s < S; s++) {
          double pd = P[s] * ref_drop(c, b, h, t, s);
          for (int64_t d = 0; d < D; d++) {
            dq[row * D + d] += scale * dP[s] * kb[s * D + d];
            dk[((b * c->Hkv + g) * S + s) * D + d] += scale * dP[s] * q[row * D + d];
            dv[((b * c->Hkv + g) * S + s) * D + d] += pd * dout[row * D + d];
          }
        }
      }
  free(P), free(dP);
}

static float *to_f32(const double *x, int64_t n) {
  float *y = malloc(n * 4);
  for (int64_t i = 0; i < n; i++) y[i] = (float)x[i];
  return y;
}

static void run_case(const cfg *c, tl_dtype dt, int seed) {
  int64_t nq = c->B * c->Hq * c->T * c->D, nk = c->B * c->Hkv * c->S * c->D;
  float *q = tc_randn(nq, 1.0f, seed), *k = tc_randn(nk, 1.0f, seed + 1);
  float *v = tc_randn(nk, 1.0f, seed + 2), *dout = tc_randn(nq, 1.0f, seed + 3);
  tc_round(q, nq, dt), tc_round(k, nk, dt), tc_round(v, nk, dt), tc_round(dout, nq, dt);
  int32_t *mask = NULL;
  if (c->mask) {
    // Pad the tail of each batch row (a different length each), or all of batch 1.
    mask = malloc(c->B * c->S * 4);
    for (int64_t b = 0; b < c->B; b++)
      for (int64_t s = 0; s < c->S; s++)
        mask[b * c->S + s] = (c->dead_batch && b == 1) ? 0 : s < c->S - 3 * b - 1 || s == 0;
  }

  // GPU forward, then backward into zeroed gradients.
  tl_cuda_attn a = {c->B, c->Hq, c->Hkv, c->T, c->S, c->D, NULL, c->causal, 0.0f,
                    c->dropout, 7, 1000};
  void *d_q = tc_up(q, nq, dt), *d_k = tc_up(k, nk, dt), *d_v = tc_up(v, nk, dt);
  void *d_do = tc_up(dout, nq, dt), *d_o = tl_device_malloc(nq * 4);
  float *zq = calloc(nq, 4), *zk = calloc(nk, 4);
  void *d_dq = tc_up(zq, nq, dt), *d_dk = tc_up(zk, nk, dt), *d_dv = tc_up(zk, nk, dt);
  float *d_lse = tl_device_malloc(c->B * c->Hq * c->T * 4);
  int32_t *d_mask = mask ? tc_up_i32(mask, c->B * c->S) : NULL;
  a.key_mask = d_mask;
  tl_cuda_attention((tl_cuda_dtype)dt, &a, d_o, d_lse, d_q, d_k, d_v);
  tl_cuda_attention_bwd((tl_cuda_dtype)dt, &a, d_dq, d_dk, d_dv, d_do, d_q, d_k, d_v, d_o,
                        d_lse, NULL);
  float *o = tc_down(d_o, nq, dt), *dq = tc_down(d_dq, nq, dt);
  float *dk = tc_down(d_dk, nk, dt), *dv = tc_down(d_dv, nk, dt);

  // Reference.
  double *ro = calloc(nq, 8), *rdq = calloc(nq, 8), *rdk = calloc(nk, 8), *rdv = calloc(nk, 8);
  ref_attention(c, q, k, v, mask, dout, o, ro, rdq, rdk, rdv);
  float *fo = to_f32(ro, nq), *fdq = to_f32(rdq, nq), *fdk = to_f32(rdk, nk);
  float *fdv = to_f32(rdv, nk);
  char what[160];
  snprintf(what, sizeof what, "attention %s B%ld Hq%ld Hkv%ld T%ld S%ld D%ld%s%s p%.2f",
           dt == TL_F32 ? "f32" : "bf16", (long)c->B, (long)c->Hq, (long)c->Hkv, (long)c->T,
           (long)c->S, (long)c->D, c->causal ? " causal" : "", c->mask ? " mask" : "",
           c->dropout);
  double tol = tc_tol(dt);
  tc_check(tl_fmt("%s: o", what), o, fo, nq, tol);
  tc_check(tl_fmt("%s: dq", what), dq, fdq, nq, tol);
  tc_check(tl_fmt("%s: dk", what), dk, fdk, nk, tol);
  tc_check(tl_fmt("%s: dv", what), dv, fdv, nk, tol);

  free(q), free(k), free(v), free(dout), free(mask), free(zq), free(zk);
  free(o), free(dq), free(dk), free(dv), free(ro), free(rdq), free(rdk), free(rdv);
  free(fo), free(fdq), free(fdk), free(fdv);
  tl_device_free(d_q), tl_device_free(d_k), tl_device_free(d_v), tl_device_free(d_do);
  tl_device_free(d_o), tl_device_free(d_dq), tl_device_free(d_dk), tl_device_free(d_dv);
  tl_device_free(d_lse), tl_device_free(d_mask);
}

Test(cuda_attention, f32_forward_backward) {
  REQUIRE_GPU();
  for (int i = 0; i < NCASES; i++) run_case(&CASES[i], TL_F32, 100 + 10 * i);
}

Test(cuda_attention, bf16_forward_backward) {
  REQUIRE_GPU();
  for (int i = 0; i < NCASES; i++) run_case(&CASES[i], TL_BF16, 200 + 10 * i);
}

// A batch whose keys are all padding must give zero outputs and zero gradients.
Test(cuda_attention, fully_masked_rows_are_zero) {
  REQUIRE_GPU();
  cfg c = {2, 1, 1, 5, 5, 8, false, true, true, 0.0f};
  run_case(&c, TL_F32, 5); // the reference gives zeros there; checked element-wise
}
#endif
