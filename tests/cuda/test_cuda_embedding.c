// CUDA embedding lookup and its backward against a plain CPU loop (the row
// copy and the scatter-add are their own reference: no arithmetic but sums,
// done here in double). Tolerances: cuda_check.h.
#include "tests/cuda/cuda_check.h"

#ifndef TL_HAVE_CUDA
Test(cuda_embedding, skipped) {
  fprintf(stderr, "skipped: no GPU (built without CUDA)\n");
  cr_skip_test("skipped: no GPU (built without CUDA)");
}
#else
#include "kernels/cuda/tl_cuda.h"

// (M ids, C columns, V rows): 1, primes, more ids than rows (repeats).
static const int64_t SHAPES[][3] = {{1, 1, 1}, {7, 3, 5}, {131, 17, 11}, {1000, 769, 97},
                                    {3, 64, 60000}};

static int32_t *random_ids(int64_t M, int64_t V, uint64_t seed) {
  int32_t *ids = malloc(M * sizeof(int32_t));
  uint64_t s = seed;
  for (int64_t m = 0; m < M; m++) {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    ids[m] = (int32_t)((s >> 33) % (uint64_t)V);
  }
  return ids;
}

Test(cuda_embedding, forward_all_dtype_pairs) {
  REQUIRE_GPU();
  for (int si = 0; si < 5; si++)
    for (int tdt = 0; tdt < 2; tdt++)
      for (int ydt = 0; ydt < 2; ydt++) {
        int64_t M = SHAPES[si][0], C = SHAPES[si][1], V = SHAPES[si][2];
        tl_dtype tt = tdt ? TL_BF16 : TL_F32, yt = ydt ? TL_BF16 : TL_F32;
        float *table = tc_randn(V * C, 1.0f, 80 + si);
        tc_round(table, V * C, tt);
        int32_t *ids = random_ids(M, V, 90 + si);
        float *ref = malloc(M * C * sizeof(float));
        for (int64_t m = 0; m < M; m++) memcpy(ref + m * C, table + ids[m] * C, C * sizeof(float));

        void *d_t = tc_up(table, V * C, tt), *d_y = tl_device_malloc(M * C * 4);
        int32_t *d_ids = tc_up_i32(ids, M);
        tl_cuda_embedding((tl_cuda_dtype)tt, d_t, (tl_cuda_dtype)yt, d_y, d_ids, M, C, V);
        float *got = tc_down(d_y, M * C, yt);
        // Exact in f32; one rounding when the output is bf16.
        tc_check(tl_fmt("embedding M=%ld C=%ld V=%ld", (long)M, (long)C, (long)V), got, ref,
                 M * C, yt == TL_F32 && tt == TL_F32 ? 0.0 : TOL_BF16);
        cr_assert_eq(tl_cuda_take_bad_index(), -1);
        free(table), free(ids), free(ref), free(got);
        tl_device_free(d_t), tl_device_free(d_y), tl_device_free(d_ids);
      }
}

Test(cuda_embedding, out_of_range_id_is_reported) {
  REQUIRE_GPU();
  int32_t ids[3] = {0, 7, 2};
  float *table = tc_randn(5 * 4, 1.0f, 1);
  void *d_t = tc_up(table, 20, TL_F32), *d_y = tl_device_malloc(3 * 4 * 4);
  int32_t *d_ids = tc_up_i32(ids, 3);
  tl_cuda_embedding(TL_CUDA_F32, d_t, TL_CUDA_F32, d_y, d_ids, 3, 4, 5);
  cr_assert_eq(tl_cuda_take_bad_index(), 7);
  cr_assert_eq(tl_cuda_take_bad_index(), -1, "the report is cleared once taken");
  free(table);
  tl_device_free(d_t), tl_device_free(d_y), tl_device_free(d_ids);
}

// dtable[id] += dy rows, deterministic and atomic; the deterministic one must
// also give the same bits twice.
Test(cuda_embedding, backward_deterministic_and_atomic) {
  REQUIRE_GPU();
  for (int si = 0; si < 5; si++)
    for (int dti = 0; dti < 2; dti++)
      for (int det = 0; det < 2; det++) {
        int64_t M = SHAPES[si][0], C = SHAPES[si][1], V = SHAPES[si][2];
        tl_dtype dt = dti ? TL_BF16 : TL_F32; // dtable is f32 (master); dy in dt
        float *dy = tc_randn(M * C, 1.0f, 100 + si), *dt0 = tc_randn(V * C, 1.0f, 110 + si);
        tc_round(dy, M * C, dt);
        int32_t *ids = random_ids(M, V, 120 + si);
        double *acc = calloc(V * C, sizeof(double));
        for (int64_t i = 0; i < V * C; i++) acc[i] = dt0[i];
        for (int64_t m = 0; m < M; m++)
          for (int64_t c = 0; c < C; c++) acc[ids[m] * C + c] += dy[m * C + c];
        float *ref = malloc(V * C * sizeof(float));
        for (int64_t i = 0; i < V * C; i++) ref[i] = (float)acc[i];

        void *d_dy = tc_up(dy, M * C, dt), *d_tab = tc_up(dt0, V * C, TL_F32);
        int32_t *d_ids = tc_up_i32(ids, M);
        tl_cuda_embedding_bwd(TL_CUDA_F32, d_tab, (tl_cuda_dtype)dt, d_dy, d_ids, M, C, V, det);
        float *got = tc_down(d_tab, V * C, TL_F32);
        tc_check(tl_fmt("embedding bwd det=%d M=%ld C=%ld", det, (long)M, (long)C), got, ref,
                 V * C, TOL_F32);
        if (det) {
          void *again = tc_up(dt0, V * C, TL_F32);
          tl_cuda_embedding_bwd(TL_CUDA_F32, again, (tl_cuda_dtype)dt, d_dy, d_ids, M, C, V,
                                true);
          float *got2 = tc_down(again, V * C, TL_F32);
          cr_assert(memcmp(got, got2, V * C * sizeof(float)) == 0, "not deterministic");
          free(got2);
          tl_device_free(again);
        }
        free(dy), free(dt0), free(ids), free(acc), free(ref), free(got);
        tl_device_free(d_dy), tl_device_free(d_tab), tl_device_free(d_ids);
      }
}
#endif
