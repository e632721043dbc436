// tl_cuda.h: the C-callable CUDA backend. Plain functions on device pointers,
// launched on one CUDA stream per process, in stream order (no host sync unless
// a function says so). Compiled only when nvcc is found (TL_HAVE_CUDA).
//
// Conventions, shared with kernels/cpu:
//  - every array is contiguous, row-major; n counts elements; [N, C] rows.
//  - "activation" pointers (x, y, dy, dx, logits, q, k, v ...) are f32 or bf16, as
//    the tl_cuda_dtype argument says; parameters (gamma, beta, embedding tables),
//    their gradients, saved statistics (mean, rstd, lse) and optimizer state are
//    always f32 (f32 master weights). Arithmetic is always f32; bf16 values are
//    rounded to nearest even on store, as tl_f32_to_bf16 does on the CPU.
//  - backward kernels ACCUMULATE (+=) into the gradients they are given, as the
//    tape expects; a NULL gradient pointer means "not wanted".
//  - reductions over rows (bias, gamma, beta gradients) are deterministic: fixed
//    partition, fixed order, independent of the GPU model.
// Errors: a failing CUDA or cuBLAS call inside a kernel wrapper is a programmer
// error or a dead device: it prints "file:line: call: reason" and aborts. The
// setup functions (init, malloc) return a status and leave the reason in
// tl_cuda_error() instead, so callers can report it.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

// Same values as TL_F32 and TL_BF16 in core/tensor.h.
typedef enum { TL_CUDA_F32 = 0, TL_CUDA_BF16 = 1 } tl_cuda_dtype;

// ---------------------------------------------------------------------------
// Runtime (runtime.cu)

// Number of usable devices; 0 when there is no driver, no device or any error.
// Never aborts, so tests and commands can probe it.
int tl_cuda_device_count(void);
// Selects device `ordinal`, creates the process stream and the cuBLAS handle.
// Returns 0, or -1 with the reason in tl_cuda_error(). Idempotent for the same
// ordinal. Other functions call tl_cuda_init(0) on first use.
int tl_cuda_init(int ordinal);
// Destroys the stream, the handle and the scratch buffer (not user allocations).
void tl_cuda_shutdown(void);
// The last setup failure as "file:line: call: reason" (empty if none).
const char *tl_cuda_error(void);
// Name, global memory and SM count of the current device (init first).
void tl_cuda_device_info(char *name, size_t name_len, size_t *mem_bytes, int *sm_count);
// The process stream as a cudaStream_t (void * so C callers need no CUDA headers).
void *tl_cuda_stream(void);

// Device memory. tl_cuda_malloc returns NULL with the reason in tl_cuda_error()
// (the caller decides whether that is fatal); memory is 256-byte aligned.
void *tl_cuda_malloc(size_t bytes);
void tl_cuda_free(void *p); // NULL is fine
// Copies in stream order. h2d returns once the host buffer may be reused;
// d2h waits for the stream, so the host data is ready on return.
void tl_cuda_memcpy_h2d(void *dst, const void *src, size_t bytes);
void tl_cuda_memcpy_d2h(void *dst, const void *src, size_t bytes);
void tl_cuda_memcpy_d2d(void *dst, const void *src, size_t bytes);
void tl_cuda_memset0(void *dst, size_t bytes);
// Waits for all work queued on the process stream.
void tl_cuda_sync(void);

// Timing with CUDA events on the process stream (bench): begin, queue the work,
// end returns the milliseconds between the two (waits for the end event).
void tl_cuda_timer_begin(void);
float tl_cuda_timer_end_ms(void);

// ---------------------------------------------------------------------------
// GEMM through cuBLAS (runtime.cu). Row-major:
//   C[M, N] = alpha * op(A) @ op(B) + beta * C
// op(A) is [M, K]: A is stored [M, K] with row stride lda, or [K, M] if trans_a;
// op(B) is [K, N]: B is stored [K, N] with row stride ldb, or [N, K] if trans_b.
// ab is the dtype of A and B, c the dtype of C. f32 x f32 -> f32 uses
// cublasSgemm (true f32, no TF32); anything with bf16 uses cublasGemmEx with
// CUBLAS_COMPUTE_32F (f32 accumulation).
void tl_cuda_gemm(tl_cuda_dtype ab, tl_cuda_dtype c, bool trans_a, bool trans_b, int M, int N,
                  int K, float alpha, const void *A, int lda, const void *B, int ldb, float beta,
                  void *C, int ldc);
// The same for `batch` independent products; matrix i starts at A + i*stride_a
// elements (and so on). A stride of 0 shares one matrix across the batch.
void tl_cuda_gemm_batched(tl_cuda_dtype ab, tl_cuda_dtype c, bool trans_a, bool trans_b, int M,
                          int N, int K, float alpha, const void *A, int lda, int64_t stride_a,
                          const void *B, int ldb, int64_t stride_b, float beta, void *C, int ldc,
                          int64_t stride_c, int batch);

// ---------------------------------------------------------------------------
// Elementwise, activations, dropout, AdamW (elementwise.cu), embedding (embedding.cu).
// In this group every float pointer of one call has the call's dtype dt, except
// where stated (AdamW, embedding tables).

typedef enum { TL_CUDA_ADD, TL_CUDA_SUB, TL_CUDA_MUL } tl_cuda_binop;

// y[i] = a[i] op b[i % nb]  (nb == n: same shape; nb < n: row broadcast).
void tl_cuda_binary(tl_cuda_dtype dt, tl_cuda_binop op, const void *a, const void *b, void *y,
                    int64_t n, int64_t nb);
// y[i] = s * x[i]  (x and y may alias).
void tl_cuda_scale(tl_cuda_dtype dt, void *y, const void *x, float s, int64_t n);
// y[i] += s * x[i].
void tl_cuda_axpy(tl_cuda_dtype dt, void *y, const void *x, float s, int64_t n);
// y[i] += x[i] * b[i % nb]   (backward of mul for the full-shape input).
void tl_cuda_mul_acc(tl_cuda_dtype dt, void *y, const void *x, const void *b, int64_t n,
                     int64_t nb);
// Column sums over the n / nb rows of an [n/nb, nb] matrix (backward of a
// broadcast operand): db[j] += s * sum_r x[r, j] * (w ? w[r, j] : 1).
// Deterministic: per-chunk partials in a fixed partition, then a fixed-order sum.
void tl_cuda_colsum_acc(tl_cuda_dtype dt, void *db, const void *x, const void *w, float s,
                        int64_t n, int64_t nb);
// y[i] += mul * (s ? s[0] : 1), s a DEVICE scalar (a loss gradient, say) or NULL.
void tl_cuda_add_scalar(tl_cuda_dtype dt, void *y, const float *s, float mul, int64_t n);
// out[0] = scale * sum_i x[i], an f32 device scalar; deterministic (fixed
// partition and order).
void tl_cuda_sum(tl_cuda_dtype dt, float *out, const void *x, int64_t n, float scale);
// Strided copy for views, rank <= 4: for every index, dst[idx] = src[idx], or
// dst[idx] += src[idx] when accumulate (strides in elements, shape shared).
void tl_cuda_strided_copy(tl_cuda_dtype dt, void *dst, const int64_t *dst_stride,
                          const void *src, const int64_t *src_stride, const int64_t *shape,
                          int rank, bool accumulate);
// Type conversion, any direction between f32 and bf16 (same dtype: a copy).
void tl_cuda_convert(tl_cuda_dtype dst_dt, void *dst, tl_cuda_dtype src_dt, const void *src,
                     int64_t n);

// Activations: forward writes y; backward adds into dx.
void tl_cuda_gelu(tl_cuda_dtype dt, void *y, const void *x, int64_t n); // erf form
void tl_cuda_gelu_bwd(tl_cuda_dtype dt, void *dx, const void *dy, const void *x, int64_t n);
void tl_cuda_tanh(tl_cuda_dtype dt, void *y, const void *x, int64_t n);
// y is the forward output tanh(x).
void tl_cuda_tanh_bwd(tl_cuda_dtype dt, void *dx, const void *dy, const void *y, int64_t n);
void tl_cuda_silu(tl_cuda_dtype dt, void *y, const void *x, int64_t n);
void tl_cuda_silu_bwd(tl_cuda_dtype dt, void *dx, const void *dy, const void *x, int64_t n);
// y = silu(gate) * up.
void tl_cuda_swiglu(tl_cuda_dtype dt, void *y, const void *gate, const void *up, int64_t n);
// dgate or dup may be NULL.
void tl_cuda_swiglu_bwd(tl_cuda_dtype dt, void *dgate, void *dup, const void *dy,
                        const void *gate, const void *up, int64_t n);

// Philox4x32-10 uniforms, the exact mapping of core/rng.h:
//   out[i] = tl_rng_uniform(seed, offset + i)  (f32 out, bit-identical to the CPU).
void tl_cuda_rng_uniform(float *out, int64_t n, uint64_t seed, uint64_t offset);
// The same device code compiled for the host (no GPU needed): one uniform.
// Lets a CPU-only build check the kernels' copy of the generator.
float tl_cuda_philox_uniform_host(uint64_t seed, uint64_t counter);
// Dropout: element i is kept when tl_rng_uniform(seed, offset + i) >= p, and kept
// ones are scaled by 1 / (1 - p). Nothing is stored: backward redraws the mask.
//   fwd: y[i] = keep ? x[i] / (1 - p) : 0         bwd: dx[i] += keep ? dy[i] / (1 - p) : 0
void tl_cuda_dropout(tl_cuda_dtype dt, void *y, const void *x, int64_t n, float p,
                     uint64_t seed, uint64_t offset);
void tl_cuda_dropout_bwd(tl_cuda_dtype dt, void *dx, const void *dy, int64_t n, float p,
                         uint64_t seed, uint64_t offset);

// Row lookup (embedding.cu): y[m, :] = table[ids[m], :] for m < M; table [V, C] in table_dt, y in
// y_dt (e.g. f32 master table -> bf16 activations). An id outside [0, V) gives a
// zero row and is remembered; tl_cuda_take_bad_index() reports it.
void tl_cuda_embedding(tl_cuda_dtype table_dt, const void *table, tl_cuda_dtype y_dt, void *y,
                       const int32_t *ids, int64_t M, int64_t C, int64_t V);
// Backward: dtable[ids[m], :] += dy[m, :]. deterministic = true sorts the ids
// (stable radix sort) and sums the rows of each id in increasing m, one thread per
// (id, column): the same bits every run. false uses atomicAdd (no sort; the order
// of additions, and so the last bits, vary). Ids outside [0, V) are skipped.
// (embedding.cu)
void tl_cuda_embedding_bwd(tl_cuda_dtype dtable_dt, void *dtable, tl_cuda_dtype dy_dt,
                           const void *dy, const int32_t *ids, int64_t M, int64_t C, int64_t V,
                           bool deterministic);
// Waits for the stream; returns the first out-of-range id seen by a lookup since
// the last call, or -1 when there was none, and clears it. (A check, not a hot path.)
int64_t tl_cuda_take_bad_index(void);

// AdamW over the flat parameter buffer (all f32), PyTorch's formulation:
//   g = grad * grad_scale; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2
//   w -= lr * (wd * w + (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps))
// step t counts from 1; no_bias_correction drops the two (1 - b^t) divisors (the
// ET-BERT recipe, as train/optim.h allows). Segments describe which elements
// are frozen (skipped) or take no weight decay: segment k covers
// [seg_start[k], seg_start[k+1]) (the last one runs to n), flags bit 0 = frozen,
// bit 1 = no decay. seg_start and seg_flags are DEVICE arrays (upload once); nseg = 0
// means one decayed segment. w_bf16, when not NULL, receives a bf16 copy of the updated
// weights.
typedef struct tl_cuda_adamw_hp {
  float lr, beta1, beta2, eps, weight_decay, grad_scale;
  int64_t step;
  bool no_bias_correction;
} tl_cuda_adamw_hp;
#define TL_CUDA_SEG_FROZEN 1
#define TL_CUDA_SEG_NO_DECAY 2
void tl_cuda_adamw(float *w, const float *grad, float *m, float *v, int64_t n,
                   const tl_cuda_adamw_hp *hp, const int64_t *seg_start,
                   const uint8_t *seg_flags, int nseg, uint16_t *w_bf16);
// out[0] = sum of x[i]^2 (f32 result on the device, deterministic), for the
// global gradient norm.
void tl_cuda_sumsq(float *out, const float *x, int64_t n);

// ---------------------------------------------------------------------------
// Rows: softmax, norms, cross entropy, rotary embedding (rows.cu).

// y[n, :] = softmax(x[n, :]) over C. x and y may alias.
void tl_cuda_softmax(tl_cuda_dtype dt, void *y, const void *x, int64_t N, int64_t C);
// dx += y * (dy - sum(dy * y)), y the softmax output.
void tl_cuda_softmax_bwd(tl_cuda_dtype dt, void *dx, const void *dy, const void *y, int64_t N,
                         int64_t C);
// y[n, :] = x[n, :] - logsumexp(x[n, :]).
void tl_cuda_log_softmax(tl_cuda_dtype dt, void *y, const void *x, int64_t N, int64_t C);
// dx += dy - exp(y) * sum(dy), y the log-softmax output.
void tl_cuda_log_softmax_bwd(tl_cuda_dtype dt, void *dx, const void *dy, const void *y,
                             int64_t N, int64_t C);

// LayerNorm over C, biased variance: y = (x - mean) * rstd * gamma + beta (beta
// may be NULL). mean[N], rstd[N] (f32) are saved for backward.
void tl_cuda_layernorm(tl_cuda_dtype dt, void *y, float *mean, float *rstd, const void *x,
                       const float *gamma, const float *beta, int64_t N, int64_t C, float eps);
// dx += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dy * gamma;
// dgamma += sum_n dy * xhat; dbeta += sum_n dy. Any of dx, dgamma, dbeta may be NULL.
void tl_cuda_layernorm_bwd(tl_cuda_dtype dt, void *dx, float *dgamma, float *dbeta,
                           const void *dy, const void *x, const float *gamma, const float *mean,
                           const float *rstd, int64_t N, int64_t C);
// RMSNorm: y = x * rstd * gamma, rstd = 1 / sqrt(mean(x^2) + eps), saved.
void tl_cuda_rmsnorm(tl_cuda_dtype dt, void *y, float *rstd, const void *x, const float *gamma,
                     int64_t N, int64_t C, float eps);
// dx += rstd * (g - xhat * mean(g * xhat)), g = dy * gamma; dgamma += sum_n dy * xhat.
void tl_cuda_rmsnorm_bwd(tl_cuda_dtype dt, void *dx, float *dgamma, const void *dy,
                         const void *x, const float *gamma, const float *rstd, int64_t N,
                         int64_t C);

// Cross entropy fused with log-softmax. logits [N, V], targets i32 [N], each in
// [0, V) or == ignore_index (a target outside both counts as ignored and is
// reported by tl_cuda_take_bad_index, like an embedding id). Writes lse[N]
// (every row) and, on the device, loss[0] = mean over
// counted rows of lse - logit[target] (0 when none) and count[0] = that number
// of rows (as a float). All without a host sync.
void tl_cuda_cross_entropy(tl_cuda_dtype dt, float *loss, float *count, float *lse,
                           const void *logits, const int32_t *targets, int64_t N, int64_t V,
                           int ignore_index);
// dlogits[n, :] += dloss[0] / count[0] * (softmax(logits[n]) - onehot(target[n]))
// for counted rows; dloss and count are device scalars (the loss's gradient and
// the forward's count), so the whole step stays on the device.
void tl_cuda_cross_entropy_bwd(tl_cuda_dtype dt, void *dlogits, const float *dloss,
                               const float *count, const float *lse, const void *logits,
                               const int32_t *targets, int64_t N, int64_t V, int ignore_index);

// Rotary embedding, Hugging Face Llama convention (rotate_half pairs (i, i + D/2)):
// x, y [B, H, T, D] (D even), token t at position pos0 + t, angle
// (pos0 + t) * theta^(-2i/D) computed in f32 as transformers and kernels/cpu/rope.c
// do (f32 inverse frequency, f32 product), so both devices round alike.
// x and y may alias. bwd applies the inverse rotation and adds into dx.
void tl_cuda_rope(tl_cuda_dtype dt, void *y, const void *x, int64_t BH, int64_t T, int64_t D,
                  int64_t pos0, float theta);
void tl_cuda_rope_bwd(tl_cuda_dtype dt, void *dx, const void *dy, int64_t BH, int64_t T,
                      int64_t D, int64_t pos0, float theta);

// ---------------------------------------------------------------------------
// Fused attention (attention.cu): tiled, online softmax; never the [T, S] matrix.
// q, o [B, Hq, T, D]; k, v [B, Hkv, S, D]; Hq a multiple of Hkv (query head h
// reads kv head h / (Hq / Hkv)); D <= 256; B * Hq <= 65535 (a grid dimension).
// key_mask i32 [B, S] (1 attend, 0 pad) or NULL; causal: query t sees keys
// s <= t (needs T == S). scale 0 = 1/sqrt(D).
// A query that sees no key gets a zero output and lse = +inf (as kernels/cpu:
// exp(score - lse) is then 0 in backward).
// Dropout on the probabilities (p > 0): element (b, h, t, s) is kept when
// tl_rng_uniform(seed, offset + ((b*Hq + h)*T + t)*S + s) >= p, kept scaled by
// 1/(1-p) — the counter is the element's index in the [B, Hq, T, S] matrix.
typedef struct tl_cuda_attn {
  int64_t B, Hq, Hkv, T, S, D;
  const int32_t *key_mask;
  bool causal;
  float scale;
  float dropout;
  uint64_t seed, offset;
} tl_cuda_attn;
// Writes o and lse [B, Hq, T] (f32, saved for backward).
void tl_cuda_attention(tl_cuda_dtype dt, const tl_cuda_attn *a, void *o, float *lse,
                       const void *q, const void *k, const void *v);
// Adds the gradients into dq, dk, dv (any may be NULL). Deterministic: dq per
// query row, dk and dv per key row (summing the query heads of a group in order).
// scratch: B*Hq*T floats of device memory (holds rowsum(dO * O)), or NULL to
// use the backend's own scratch buffer.
void tl_cuda_attention_bwd(tl_cuda_dtype dt, const tl_cuda_attn *a, void *dq, void *dk,
                           void *dv, const void *dout, const void *q, const void *k,
                           const void *v, const void *o, const float *lse, float *scratch);

#ifdef __cplusplus
}
#endif
