// embedding.cu: row lookup (embedding, gather_rows) and its backward, the
// scatter-add of output rows into the table's gradient.
//
// The deterministic backward sorts the (id, row) pairs by id with CUB's stable
// radix sort, so the rows of each id come in increasing row order; then one
// thread per (id, column) adds them in that order. The result does not depend
// on scheduling, and the work is parallel over ids and columns (a frequent id,
// such as padding, is one long serial sum). The atomic variant skips the sort.
#include <cub/device/device_radix_sort.cuh>

#include "kernels/cuda/common.cuh"

#define THREADS 256
#define LAUNCH(kernel, n) kernel<<<tl_blocks(n, THREADS), THREADS, 0, tl_stream()>>>
#define FOR_EACH(i, n)                                                             \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);        \
       i += (int64_t)gridDim.x * blockDim.x)

template <typename TT, typename TY>
__global__ void embedding_kernel(TY *y, const TT *table, const int32_t *ids, int64_t M,
                                 int64_t C, int64_t V, int64_t *bad) {
  FOR_EACH(i, M * C) {
    int64_t m = i / C, c = i - m * C;
    int64_t id = ids[m];
    bool ok = id >= 0 && id < V;
    if (!ok && c == 0) note_bad_index(bad, id);
    st(&y[i], ok ? ld(&table[id * C + c]) : 0.0f);
  }
}

extern "C" void tl_cuda_embedding(tl_cuda_dtype table_dt, const void *table,
                                  tl_cuda_dtype y_dt, void *y, const int32_t *ids, int64_t M,
                                  int64_t C, int64_t V) {
  if (M <= 0 || C <= 0) return;
  int64_t *bad = tl_cuda_bad_index_slot();
  TL_DISPATCH(table_dt, TT, TL_DISPATCH(y_dt, TY,
      LAUNCH((embedding_kernel<TT, TY>), M * C)((TY *)y, (const TT *)table, ids, M, C, V, bad)));
  TL_CU_LAUNCH();
}

// --- deterministic backward: sort, then one ordered sum per (id, column) ------------

__global__ void iota_kernel(int32_t *x, int64_t n) {
  FOR_EACH(i, n) x[i] = (int32_t)i;
}

// Thread (i, c) with i the first sorted position of an id adds that id's rows.
template <typename TT, typename TY>
__global__ void segment_sum_kernel(TT *dtable, const TY *dy, const int32_t *keys,
                                   const int32_t *rows, int64_t M, int64_t C, int64_t V) {
  FOR_EACH(k, M * C) {
    int64_t i = k / C, c = k - i * C;
    int32_t id = keys[i];
    if ((i > 0 && keys[i - 1] == id) || id < 0 || id >= V) continue;
    float s = 0.0f;
    for (int64_t j = i; j < M && keys[j] == id; j++) s += ld(&dy[(int64_t)rows[j] * C + c]);
    st(&dtable[(int64_t)id * C + c], ld(&dtable[(int64_t)id * C + c]) + s);
  }
}

// Scratch layout: sorted keys, row indices in and out, then CUB's temporary space.
template <typename TT, typename TY>
static void embedding_bwd_sorted(TT *dtable, const TY *dy, const int32_t *ids, int64_t M,
                                 int64_t C, int64_t V) {
  if (M > INT32_MAX) tl_cuda_fail("tl_cuda_embedding_bwd", __FILE__, __LINE__, "M > 2^31");
  size_t temp = 0;
  TL_CU(cub::DeviceRadixSort::SortPairs(NULL, temp, (const int32_t *)NULL, (int32_t *)NULL,
                                        (const int32_t *)NULL, (int32_t *)NULL, (int)M, 0, 32,
                                        tl_stream()));
  size_t arr = ((size_t)M * sizeof(int32_t) + 255) & ~(size_t)255;
  char *base = (char *)tl_cuda_scratch(3 * arr + temp);
  int32_t *keys = (int32_t *)base, *rows_in = (int32_t *)(base + arr);
  int32_t *rows = (int32_t *)(base + 2 * arr);
  LAUNCH(iota_kernel, M)(rows_in, M);
  TL_CU_LAUNCH();
  TL_CU(cub::DeviceRadixSort::SortPairs(base + 3 * arr, temp, ids, keys, rows_in, rows, (int)M,
                                        0, 32, tl_stream()));
  LAUNCH((segment_sum_kernel<TT, TY>), M * C)(dtable, dy, keys, rows, M, C, V);
  TL_CU_LAUNCH();
}

// --- atomic backward ----------------------------------------------------------------------

__device__ __forceinline__ void atomic_add(float *p, float v) { atomicAdd(p, v); }
__device__ __forceinline__ void atomic_add(bf16 *p, float v) {
  atomicAdd(p, __float2bfloat16_rn(v));
}

template <typename TT, typename TY>
__global__ void embedding_bwd_atomic_kernel(TT *dtable, const TY *dy, const int32_t *ids,
                                            int64_t M, int64_t C, int64_t V) {
  FOR_EACH(i, M * C) {
    int64_t m = i / C, c = i - m * C;
    int64_t id = ids[m];
    if (id >= 0 && id < V) atomic_add(&dtable[id * C + c], ld(&dy[i]));
  }
}

extern "C" void tl_cuda_embedding_bwd(tl_cuda_dtype dtable_dt, void *dtable,
                                      tl_cuda_dtype dy_dt, const void *dy, const int32_t *ids,
                                      int64_t M, int64_t C, int64_t V, bool deterministic) {
  if (M <= 0 || C <= 0) return;
  TL_DISPATCH(dtable_dt, TT, TL_DISPATCH(dy_dt, TY, {
    if (deterministic)
      embedding_bwd_sorted((TT *)dtable, (const TY *)dy, ids, M, C, V);
    else
      LAUNCH((embedding_bwd_atomic_kernel<TT, TY>), M * C)((TT *)dtable, (const TY *)dy, ids,
                                                          M, C, V);
  }));
  TL_CU_LAUNCH();
}
