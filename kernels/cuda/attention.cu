// attention.cu: fused scaled-dot-product attention, forward and backward.
//
// Correctness first, then speed. The shape of every kernel is the same: a block
// of WARPS warps, one warp per row (a query row in forward and dq, a key row in
// dk/dv). The block walks the other side in tiles of 32 rows staged in shared
// memory as f32; lane j of a warp owns row j of the tile for the dot products,
// and lane l owns the output columns d = l, l + 32, ... for the weighted sums
// (probabilities passed around the warp by shuffles). The forward keeps the
// running max and sum of the online softmax per query row; the [T, S] score
// matrix never exists. Backward recomputes probabilities from the saved
// log-sum-exp, as FlashAttention does, and needs rowsum(dO * O) per query row.
//
// dq is computed per query row and dk, dv per key row (summing the query heads
// of a group and all queries in a fixed order), so there are no atomics and the
// gradients are deterministic; the price is computing the scores twice.
#include "kernels/cuda/common.cuh"

#define WARPS 8
#define TILE 32
#define MAX_DPL 8 // columns per lane: D <= 256

// Everything a kernel needs about the problem, by value.
struct attn_shape {
  int64_t B, Hq, Hkv, T, S;
  int D, ldt; // head dim and shared-tile row stride (D + 1: no bank conflicts)
  const int32_t *key_mask;
  bool causal;
  float scale, dropout, keep_scale;
  uint64_t seed, offset;
};

// Can query t of batch b see key s?
__device__ __forceinline__ bool visible(const attn_shape &a, int64_t b, int64_t t, int64_t s) {
  if (s >= a.S || t >= a.T) return false;
  if (a.causal && s > t) return false;
  return !a.key_mask || a.key_mask[b * a.S + s] != 0;
}

// Dropout factor for probability (b, h, t, s): 0 or 1/(1-p); 1 without dropout.
__device__ __forceinline__ float drop_factor(const attn_shape &a, int64_t b, int64_t h,
                                             int64_t t, int64_t s) {
  if (a.dropout <= 0.0f) return 1.0f;
  uint64_t idx = (uint64_t)(((b * a.Hq + h) * a.T + t) * a.S + s);
  return philox_uniform(a.seed, a.offset + idx) >= a.dropout ? a.keep_scale : 0.0f;
}

// All threads of the block copy rows [row0, row0 + TILE) of src [nrows, D] into
// dst [TILE, ldt] as f32; rows past the end become zeros.
template <typename T>
__device__ void load_tile(float *dst, const T *src, int64_t row0, int64_t nrows, int D,
                          int ldt) {
  for (int i = threadIdx.x; i < TILE * D; i += blockDim.x) {
    int r = i / D, d = i - r * D;
    dst[r * ldt + d] = row0 + r < nrows ? ld(&src[(row0 + r) * D + d]) : 0.0f;
  }
}

// One row [D] into shared (by one warp).
template <typename T> __device__ void load_row(float *dst, const T *src, int D) {
  for (int d = threadIdx.x & 31; d < D; d += 32) dst[d] = ld(&src[d]);
}

__device__ __forceinline__ float dot(const float *a, const float *b, int D) {
  float s = 0.0f;
  for (int d = 0; d < D; d++) s += a[d] * b[d];
  return s;
}

// acc[k] += sum over the warp's lanes j of w_j * tile[j, lane + 32k].
__device__ __forceinline__ void warp_axpy_tile(float acc[MAX_DPL], float w, const float *tile,
                                               int D, int ldt) {
  int lane = threadIdx.x & 31;
  for (int j = 0; j < TILE; j++) {
    float wj = __shfl_sync(0xffffffffu, w, j);
    if (wj == 0.0f) continue; // uniform across the warp: wj is the same for all lanes
#pragma unroll
    for (int k = 0; k < MAX_DPL; k++) {
      int d = lane + 32 * k;
      if (d < D) acc[k] += wj * tile[j * ldt + d];
    }
  }
}

// Adds acc (scaled) into the row out[D] in global memory (+= when acc_out).
template <typename T>
__device__ void store_row(T *out, const float acc[MAX_DPL], float scale, int D, bool acc_out) {
  int lane = threadIdx.x & 31;
#pragma unroll
  for (int k = 0; k < MAX_DPL; k++) {
    int d = lane + 32 * k;
    if (d < D) st(&out[d], scale * acc[k] + (acc_out ? ld(&out[d]) : 0.0f));
  }
}

// --- forward -------------------------------------------------------------------------
// grid (ceil(T / WARPS), B * Hq). Shared: K tile, V tile, one q row per warp.

template <typename T>
__global__ void attn_fwd_kernel(attn_shape a, T *o, float *lse, const T *q, const T *k,
                                const T *v) {
  extern __shared__ float smem[];
  float *ks = smem, *vs = ks + TILE * a.ldt, *qs = vs + TILE * a.ldt;
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int64_t bh = blockIdx.y, b = bh / a.Hq, h = bh % a.Hq, g = h / (a.Hq / a.Hkv);
  int64_t t0 = (int64_t)blockIdx.x * WARPS, t = t0 + warp;
  bool active = t < a.T;
  const T *kb = k + (b * a.Hkv + g) * a.S * a.D, *vb = v + (b * a.Hkv + g) * a.S * a.D;
  float *qrow = qs + warp * a.D;
  if (active) load_row(qrow, q + (bh * a.T + t) * a.D, a.D);

  // Keys the block's last row can see bound the tiles (causal).
  int64_t t_last = min(t0 + WARPS, a.T) - 1;
  int64_t s_end = a.causal ? min(a.S, t_last + 1) : a.S;
  float m_run = -INFINITY, l_run = 0.0f, acc[MAX_DPL] = {0};
  for (int64_t s0 = 0; s0 < s_end; s0 += TILE) {
    __syncthreads(); // the previous tile is no longer read
    load_tile(ks, kb, s0, a.S, a.D, a.ldt);
    load_tile(vs, vb, s0, a.S, a.D, a.ldt);
    __syncthreads();
    if (!active) continue;

    // Lane j scores key s0 + j; the online softmax rescales what came before.
    int64_t s = s0 + lane;
    bool vis = visible(a, b, t, s);
    float score = vis ? a.scale * dot(qrow, ks + lane * a.ldt, a.D) : -INFINITY;
    float m_new = fmaxf(m_run, warp_max(score));
    if (m_new == -INFINITY) continue; // nothing visible yet
    float p = vis ? expf(score - m_new) : 0.0f;
    float corr = expf(m_run - m_new); // 0 on the first visible tile
    l_run = l_run * corr + warp_sum(p);
#pragma unroll
    for (int kk = 0; kk < MAX_DPL; kk++) acc[kk] *= corr;
    float pd = vis ? p * drop_factor(a, b, h, t, s) : 0.0f;
    warp_axpy_tile(acc, pd, vs, a.D, a.ldt);
    m_run = m_new;
  }
  if (!active) return;

  // Normalise; a row that saw no key gets zeros and lse = +inf (as kernels/cpu).
  float inv = l_run > 0.0f ? 1.0f / l_run : 0.0f;
  store_row(o + (bh * a.T + t) * a.D, acc, inv, a.D, false);
  if (lane == 0) lse[bh * a.T + t] = l_run > 0.0f ? m_run + logf(l_run) : INFINITY;
}

// --- backward: delta = rowsum(dO * O) ---------------------------------------------------

template <typename T>
__global__ void attn_delta_kernel(float *delta, const T *dout, const T *o, int64_t rows, int D) {
  int64_t r = (int64_t)blockIdx.x * WARPS + (threadIdx.x >> 5);
  if (r >= rows) return;
  float s = 0.0f;
  for (int d = threadIdx.x & 31; d < D; d += 32) s += ld(&dout[r * D + d]) * ld(&o[r * D + d]);
  s = warp_sum(s);
  if ((threadIdx.x & 31) == 0) delta[r] = s;
}

// --- backward: dq, one warp per query row --------------------------------------------
// dS = P * (dP - delta), dP = dO . v (times the dropout factor), dq += scale * dS @ K.

template <typename T>
__global__ void attn_dq_kernel(attn_shape a, T *dq, const T *dout, const T *q, const T *k,
                               const T *v, const float *lse, const float *delta) {
  extern __shared__ float smem[];
  float *ks = smem, *vs = ks + TILE * a.ldt, *qs = vs + TILE * a.ldt, *dos = qs + WARPS * a.D;
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int64_t bh = blockIdx.y, b = bh / a.Hq, h = bh % a.Hq, g = h / (a.Hq / a.Hkv);
  int64_t t0 = (int64_t)blockIdx.x * WARPS, t = t0 + warp;
  int64_t row = bh * a.T + t;
  bool active = t < a.T && lse[min(row, bh * a.T + a.T - 1)] != INFINITY;
  const T *kb = k + (b * a.Hkv + g) * a.S * a.D, *vb = v + (b * a.Hkv + g) * a.S * a.D;
  float *qrow = qs + warp * a.D, *dorow = dos + warp * a.D;
  float l = 0.0f, dl = 0.0f;
  if (active) {
    load_row(qrow, q + row * a.D, a.D);
    load_row(dorow, dout + row * a.D, a.D);
    l = lse[row];
    dl = delta[row];
  }
  __syncwarp();

  int64_t t_last = min(t0 + WARPS, a.T) - 1;
  int64_t s_end = a.causal ? min(a.S, t_last + 1) : a.S;
  float acc[MAX_DPL] = {0};
  for (int64_t s0 = 0; s0 < s_end; s0 += TILE) {
    __syncthreads();
    load_tile(ks, kb, s0, a.S, a.D, a.ldt);
    load_tile(vs, vb, s0, a.S, a.D, a.ldt);
    __syncthreads();
    if (!active) continue;
    int64_t s = s0 + lane;
    float ds = 0.0f;
    if (visible(a, b, t, s)) {
      float p = expf(a.scale * dot(qrow, ks + lane * a.ldt, a.D) - l);
      float dp = dot(dorow, vs + lane * a.ldt, a.D) * drop_factor(a, b, h, t, s);
      ds = p * (dp - dl);
    }
    warp_axpy_tile(acc, ds, ks, a.D, a.ldt);
  }
  if (active) store_row(dq + row * a.D, acc, a.scale, a.D, true);
}

// --- backward: dk and dv, one warp per key row -------------------------------------------
// For key s of kv head g: over the query heads h of the group and the queries t
// that see s, dv += P' dO_t and dk += scale * dS q_t (P' = P times dropout factor).
// grid (ceil(S / WARPS), B * Hkv). Shared: q tile, dO tile, lse and delta of the
// tile, one k row and one v row per warp.

template <typename T>
__global__ void attn_dkv_kernel(attn_shape a, T *dk, T *dv, const T *dout, const T *q,
                                const T *k, const T *v, const float *lse, const float *delta) {
  extern __shared__ float smem[];
  float *qt = smem, *dot_ = qt + TILE * a.ldt, *lt = dot_ + TILE * a.ldt, *dlt = lt + TILE;
  float *krows = dlt + TILE, *vrows = krows + WARPS * a.D;
  int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
  int64_t bg = blockIdx.y, b = bg / a.Hkv, g = bg % a.Hkv, rep = a.Hq / a.Hkv;
  int64_t s_first = (int64_t)blockIdx.x * WARPS, s = s_first + warp;
  bool active = s < a.S && (!a.key_mask || a.key_mask[b * a.S + s] != 0);
  float *krow = krows + warp * a.D, *vrow = vrows + warp * a.D;
  if (active) {
    load_row(krow, k + (bg * a.S + s) * a.D, a.D);
    load_row(vrow, v + (bg * a.S + s) * a.D, a.D);
  }
  __syncwarp();

  float dk_acc[MAX_DPL] = {0}, dv_acc[MAX_DPL] = {0};
  int64_t t_begin = a.causal ? s_first : 0; // earlier queries see none of these keys
  for (int64_t h = g * rep; h < (g + 1) * rep; h++) {
    int64_t bh = b * a.Hq + h;
    const T *qb = q + bh * a.T * a.D, *db = dout + bh * a.T * a.D;
    for (int64_t t0 = t_begin; t0 < a.T; t0 += TILE) {
      // Stage the query tile, its dO, lse and delta.
      __syncthreads();
      load_tile(qt, qb, t0, a.T, a.D, a.ldt);
      load_tile(dot_, db, t0, a.T, a.D, a.ldt);
      for (int i = threadIdx.x; i < TILE; i += blockDim.x) {
        bool in = t0 + i < a.T;
        lt[i] = in ? lse[bh * a.T + t0 + i] : INFINITY;
        dlt[i] = in ? delta[bh * a.T + t0 + i] : 0.0f;
      }
      __syncthreads();
      if (!active) continue;

      // Lane j takes query t0 + j.
      int64_t t = t0 + lane;
      float pd = 0.0f, ds = 0.0f;
      if (visible(a, b, t, s) && lt[lane] != INFINITY) {
        float p = expf(a.scale * dot(krow, qt + lane * a.ldt, a.D) - lt[lane]);
        float f = drop_factor(a, b, h, t, s);
        float dp = dot(vrow, dot_ + lane * a.ldt, a.D);
        pd = p * f;
        ds = p * (dp * f - dlt[lane]);
      }
      warp_axpy_tile(dv_acc, pd, dot_, a.D, a.ldt);
      warp_axpy_tile(dk_acc, ds, qt, a.D, a.ldt);
    }
  }
  if (!active) return;
  if (dk) store_row(dk + (bg * a.S + s) * a.D, dk_acc, a.scale, a.D, true);
  if (dv) store_row(dv + (bg * a.S + s) * a.D, dv_acc, 1.0f, a.D, true);
}

// --- host side -------------------------------------------------------------------------

static attn_shape make_shape(const tl_cuda_attn *p) {
  if (p->D > 32 * MAX_DPL || p->D <= 0 || p->Hkv <= 0 || p->Hq % p->Hkv != 0 ||
      (p->causal && p->T != p->S))
    tl_cuda_fail("tl_cuda_attention", __FILE__, __LINE__,
                 "needs 0 < D <= 256, Hq a multiple of Hkv, and T == S when causal");
  attn_shape a;
  a.B = p->B, a.Hq = p->Hq, a.Hkv = p->Hkv, a.T = p->T, a.S = p->S;
  a.D = (int)p->D, a.ldt = (int)p->D + 1;
  a.key_mask = p->key_mask, a.causal = p->causal;
  a.scale = p->scale != 0.0f ? p->scale : 1.0f / sqrtf((float)p->D);
  a.dropout = p->dropout, a.keep_scale = p->dropout > 0.0f ? 1.0f / (1.0f - p->dropout) : 1.0f;
  a.seed = p->seed, a.offset = p->offset;
  return a;
}

// Dynamic shared memory above 48 KiB must be opted into per kernel.
template <typename K> static void allow_smem(K kernel, size_t bytes) {
  if (bytes > 48 * 1024)
    TL_CU(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

template <typename T>
static void attention_fwd(const attn_shape &a, T *o, float *lse, const T *q, const T *k,
                          const T *v) {
  size_t smem = (size_t)(2 * TILE * a.ldt + WARPS * a.D) * sizeof(float);
  allow_smem(attn_fwd_kernel<T>, smem);
  dim3 grid((unsigned)((a.T + WARPS - 1) / WARPS), (unsigned)(a.B * a.Hq));
  attn_fwd_kernel<T><<<grid, WARPS * 32, smem, tl_stream()>>>(a, o, lse, q, k, v);
  TL_CU_LAUNCH();
}

template <typename T>
static void attention_bwd(const attn_shape &a, T *dq, T *dk, T *dv, const T *dout, const T *q,
                          const T *k, const T *v, const T *o, const float *lse, float *delta) {
  int64_t rows = a.B * a.Hq * a.T;
  attn_delta_kernel<T><<<(unsigned)((rows + WARPS - 1) / WARPS), WARPS * 32, 0, tl_stream()>>>(
      delta, dout, o, rows, a.D);
  TL_CU_LAUNCH();
  if (dq) {
    size_t smem = (size_t)(2 * TILE * a.ldt + 2 * WARPS * a.D) * sizeof(float);
    allow_smem(attn_dq_kernel<T>, smem);
    dim3 grid((unsigned)((a.T + WARPS - 1) / WARPS), (unsigned)(a.B * a.Hq));
    attn_dq_kernel<T><<<grid, WARPS * 32, smem, tl_stream()>>>(a, dq, dout, q, k, v, lse,
                                                               delta);
    TL_CU_LAUNCH();
  }
  if (dk || dv) {
    size_t smem = (size_t)(2 * TILE * a.ldt + 2 * TILE + 2 * WARPS * a.D) * sizeof(float);
    allow_smem(attn_dkv_kernel<T>, smem);
    dim3 grid((unsigned)((a.S + WARPS - 1) / WARPS), (unsigned)(a.B * a.Hkv));
    attn_dkv_kernel<T><<<grid, WARPS * 32, smem, tl_stream()>>>(a, dk, dv, dout, q, k, v, lse,
                                                                delta);
    TL_CU_LAUNCH();
  }
}

extern "C" void tl_cuda_attention(tl_cuda_dtype dt, const tl_cuda_attn *p, void *o, float *lse,
                                  const void *q, const void *k, const void *v) {
  if (p->B * p->Hq * p->T == 0) return;
  attn_shape a = make_shape(p);
  TL_DISPATCH(dt, T, attention_fwd(a, (T *)o, lse, (const T *)q, (const T *)k, (const T *)v));
}

extern "C" void tl_cuda_attention_bwd(tl_cuda_dtype dt, const tl_cuda_attn *p, void *dq,
                                      void *dk, void *dv, const void *dout, const void *q,
                                      const void *k, const void *v, const void *o,
                                      const float *lse, float *scratch) {
  if (p->B * p->Hq * p->T == 0 || (!dq && !dk && !dv)) return;
  attn_shape a = make_shape(p);
  float *delta = scratch ? scratch
                         : (float *)tl_cuda_scratch((size_t)(p->B * p->Hq * p->T) * sizeof(float));
  TL_DISPATCH(dt, T, attention_bwd(a, (T *)dq, (T *)dk, (T *)dv, (const T *)dout, (const T *)q,
                                   (const T *)k, (const T *)v, (const T *)o, lse, delta));
}
