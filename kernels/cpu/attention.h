// attention.h: CPU kernels for multi-head scaled dot-product attention with
// grouped-query heads, key padding, causal masking and dropout on the
// probabilities. FlashAttention's bookkeeping, not its tiling: forward keeps
// one logsumexp per query row, backward rebuilds the probabilities from it, and
// only one (batch, head)'s T x S scores exist per thread at a time.
#pragma once
#include <stdbool.h>
#include <stdint.h>

typedef struct tl_cpu_attn {
  int64_t B, Hq, Hkv, T, S, D;
  // q [B, Hq, T, D], k and v [B, Hkv, S, D], each with its own element strides for
  // the batch, head and time dims; the D dim must be contiguous (stride 1), so
  // a transposed [B, T, H, D] projection can be read in place.
  const float *q, *k, *v;
  int64_t q_stride[3], k_stride[3], v_stride[3];
  const int32_t *key_mask; // [B, S] contiguous, 0 = padding; NULL = every key
  bool causal;             // key j visible to query t only if j <= t (T == S)
  float scale;             // multiplies q.k
  float dropout;           // probability of zeroing a probability, in [0, 1)
  uint64_t seed, offset;   // Philox counter of (b, h, t, j) = offset + ((b*Hq+h)*T+t)*S+j
  // Optional dropout keep bits, [B, Hq, T, (S + 7) / 8] bytes (bit j % 8 of byte
  // j / 8): forward writes them, backward reads them instead of drawing Philox
  // again (the draws cost as much as a fifth of attention; the bits, S / 8
  // bytes per query row). NULL: backward redraws.
  uint8_t *drop_bits;
} tl_cpu_attn;

// Floats of scratch the kernels need for nthreads threads.
int64_t tl_cpu_attention_fwd_scratch(const tl_cpu_attn *a, int nthreads);
int64_t tl_cpu_attention_bwd_scratch(const tl_cpu_attn *a, int nthreads);

// out [B, Hq, T, D] contiguous (overwritten); lse [B, Hq, T] receives each query
// row's logsumexp of its scaled, masked scores (+INFINITY for a row that sees no
// key: its output is 0). scratch: tl_cpu_attention_fwd_scratch floats.
void tl_cpu_attention_fwd(const tl_cpu_attn *a, float *out, float *lse, float *scratch,
                          int nthreads);
// dout [B, Hq, T, D] contiguous; dq [B, Hq, T, D] and dk, dv [B, Hkv, S, D]
// contiguous, accumulated (+=); any of them may be NULL. lse from forward.
void tl_cpu_attention_bwd(const tl_cpu_attn *a, const float *lse, const float *dout,
                          float *dq, float *dk, float *dv, float *scratch, int nthreads);
