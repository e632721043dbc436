// CUDA Philox and dropout against core/rng.h: the uniforms must be the same
// bits as the CPU's, and the dropout mask the same element for element
// (element i kept when tl_rng_uniform(seed, offset + i) >= p). Kept values are
// compared at the tolerances of cuda_check.h (the GPU multiplies by 1/(1-p),
// which may differ from a division in the last bit).
#include "tests/cuda/cuda_check.h"

#ifndef TL_HAVE_CUDA
Test(cuda_dropout, skipped) {
  fprintf(stderr, "skipped: no GPU (built without CUDA)\n");
  cr_skip_test("skipped: no GPU (built without CUDA)");
}
#else
#include "core/rng.h"
#include "kernels/cuda/tl_cuda.h"

// Offsets that start mid-block, and one that crosses the 32-bit boundary of the
// Philox counter word.
static const uint64_t OFFSETS[] = {0, 1, 3, 4097, (1ULL << 32) - 5};
static const uint64_t SEEDS[] = {0, 42, 0xDEADBEEFCAFEF00DULL};
static const int64_t SIZES[] = {1, 2, 5, 131, 4099};

// Runs without a GPU: the kernels' generator, compiled for the host, against
// core/rng.h (the device build differs only in using __umulhi).
Test(cuda_dropout, kernel_generator_matches_rng_h_on_host) {
  for (int a = 0; a < 5; a++)
    for (int b = 0; b < 3; b++)
      for (uint64_t i = 0; i < 1000; i++) {
        float cpu = tl_rng_uniform(SEEDS[b], OFFSETS[a] + i);
        float dev = tl_cuda_philox_uniform_host(SEEDS[b], OFFSETS[a] + i);
        cr_assert(memcmp(&cpu, &dev, 4) == 0, "seed %llu counter %llu: %.9g vs %.9g",
                  (unsigned long long)SEEDS[b], (unsigned long long)(OFFSETS[a] + i), cpu, dev);
      }
}

Test(cuda_dropout, uniforms_bit_identical_to_cpu) {
  REQUIRE_GPU();
  for (int a = 0; a < 5; a++)
    for (int b = 0; b < 3; b++)
      for (int c = 0; c < 5; c++) {
        int64_t n = SIZES[c];
        float *cpu = malloc(n * sizeof(float)), *gpu = malloc(n * sizeof(float));
        tl_rng_fill_uniform(cpu, n, SEEDS[b], OFFSETS[a]);
        float *d = tl_device_malloc(n * sizeof(float));
        tl_cuda_rng_uniform(d, n, SEEDS[b], OFFSETS[a]);
        tl_device_download(gpu, d, n * sizeof(float));
        for (int64_t i = 0; i < n; i++)
          cr_assert(memcmp(&cpu[i], &gpu[i], 4) == 0,
                    "seed %llu offset %llu element %ld: cpu %.9g gpu %.9g",
                    (unsigned long long)SEEDS[b], (unsigned long long)OFFSETS[a], (long)i,
                    cpu[i], gpu[i]);
        free(cpu), free(gpu);
        tl_device_free(d);
      }
}

Test(cuda_dropout, mask_and_backward_match_cpu_draws) {
  REQUIRE_GPU();
  const float ps[] = {0.1f, 0.5f, 0.9f};
  for (int dti = 0; dti < 2; dti++)
    for (int pi = 0; pi < 3; pi++)
      for (int c = 0; c < 5; c++) {
        tl_dtype dt = dti ? TL_BF16 : TL_F32;
        int64_t n = SIZES[c];
        float p = ps[pi];
        uint64_t seed = SEEDS[c % 3], offset = OFFSETS[c];
        float *x = tc_randn(n, 1.0f, 50 + c), *dy = tc_randn(n, 1.0f, 60 + c);
        float *dx0 = tc_randn(n, 1.0f, 70 + c), *u = malloc(n * sizeof(float));
        tc_round(x, n, dt), tc_round(dy, n, dt), tc_round(dx0, n, dt);
        tl_rng_fill_uniform(u, n, seed, offset);

        // The CPU reference, straight from the rule.
        float *yref = malloc(n * sizeof(float)), *dxref = malloc(n * sizeof(float));
        for (int64_t i = 0; i < n; i++) {
          bool keep = u[i] >= p;
          yref[i] = keep ? x[i] / (1.0f - p) : 0.0f;
          dxref[i] = dx0[i] + (keep ? dy[i] / (1.0f - p) : 0.0f);
        }
        void *d_x = tc_up(x, n, dt), *d_y = tc_up(x, n, dt), *d_dy = tc_up(dy, n, dt);
        void *d_dx = tc_up(dx0, n, dt);
        tl_cuda_dropout((tl_cuda_dtype)dt, d_y, d_x, n, p, seed, offset);
        tl_cuda_dropout_bwd((tl_cuda_dtype)dt, d_dx, d_dy, n, p, seed, offset);
        float *y = tc_down(d_y, n, dt), *dx = tc_down(d_dx, n, dt);

        // The mask element for element (zero exactly where dropped), then values.
        for (int64_t i = 0; i < n; i++)
          cr_assert_eq(y[i] == 0.0f, yref[i] == 0.0f || x[i] == 0.0f,
                       "mask differs at %ld (p %g, u %.9g)", (long)i, p, u[i]);
        tc_check(tl_fmt("dropout fwd p=%g n=%ld", p, (long)n), y, yref, n, tc_tol(dt));
        tc_check(tl_fmt("dropout bwd p=%g n=%ld", p, (long)n), dx, dxref, n, tc_tol(dt));
        free(x), free(dy), free(dx0), free(u), free(yref), free(dxref), free(y), free(dx);
        tl_device_free(d_x), tl_device_free(d_y), tl_device_free(d_dy), tl_device_free(d_dx);
      }
}
#endif
