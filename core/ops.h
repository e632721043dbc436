// ops.h: the device-neutral op API. Every op:
//  - takes f32 tensors unless stated (ids and targets are i32), on one device,
//  - allocates its output in the current arena (tl_set_arena),
//  - records a tape node when grad mode is on and an input requires grad,
//  - dispatches to kernels/cpu (or kernels/cuda when the inputs live there).
// Shapes use fixed letters: B batch, T sequence, C channels, H heads, D head dim,
// V vocabulary, N rows. "Row broadcast": b's shape equals the trailing dims of a.
#pragma once
#include "core/autograd.h"

// --- views (share data; backward adds the view's grad back into the source)
tl_tensor *tl_reshape(tl_tensor *x, int rank, const int64_t *shape); // x contiguous
tl_tensor *tl_transpose(tl_tensor *x, int dim0, int dim1);
tl_tensor *tl_slice(tl_tensor *x, int dim, int64_t start, int64_t length);
tl_tensor *tl_contiguous(tl_tensor *x); // copy when x is not contiguous, else x

// --- linear algebra
// a [..., M, K] (or [..., K, M] if trans_a), b [..., K, N] (or [..., N, K] if
// trans_b) -> [..., M, N]. Batch dims equal, or b rank 2 shared by every batch.
tl_tensor *tl_matmul(tl_tensor *a, tl_tensor *b, bool trans_a, bool trans_b);
// x [..., in], w [out, in] (PyTorch layout), bias [out] or NULL -> [..., out].
tl_tensor *tl_linear(tl_tensor *x, tl_tensor *w, tl_tensor *bias);

// --- elementwise (b same shape as a, or row broadcast)
tl_tensor *tl_add(tl_tensor *a, tl_tensor *b);
tl_tensor *tl_sub(tl_tensor *a, tl_tensor *b);
tl_tensor *tl_mul(tl_tensor *a, tl_tensor *b);
tl_tensor *tl_scale(tl_tensor *a, float s);
tl_tensor *tl_gelu(tl_tensor *x);  // erf form: x/2 (1 + erf(x/sqrt 2))
tl_tensor *tl_tanh(tl_tensor *x);
tl_tensor *tl_silu(tl_tensor *x);
tl_tensor *tl_swiglu(tl_tensor *gate, tl_tensor *up); // silu(gate) * up

// --- normalisation and softmax, over the last dim
tl_tensor *tl_softmax(tl_tensor *x);
tl_tensor *tl_log_softmax(tl_tensor *x);
// gamma, beta [C]; beta may be NULL. Biased variance, as PyTorch.
tl_tensor *tl_layernorm(tl_tensor *x, tl_tensor *gamma, tl_tensor *beta, float eps);
tl_tensor *tl_rmsnorm(tl_tensor *x, tl_tensor *gamma, float eps);

// --- lookups and selection
// table [V, C], ids i32 [...] -> [..., C]. Ids out of range abort with the id.
tl_tensor *tl_embedding(tl_tensor *table, tl_tensor *ids);
// x [N, C], rows i32 [M] -> [M, C] (e.g. the masked positions of a batch).
tl_tensor *tl_gather_rows(tl_tensor *x, tl_tensor *rows);
// Concatenates n tensors along dim (equal other dims).
tl_tensor *tl_concat(tl_tensor *const *xs, int n, int dim);

// --- regularisation
// Zeroes each element with probability p and scales kept ones by 1/(1-p). The
// mask is a pure function of (seed, offset + element index) via Philox, so CPU
// and GPU, and a resumed run, draw the same mask. p == 0 returns x.
tl_tensor *tl_dropout(tl_tensor *x, float p, uint64_t seed, uint64_t offset);

// --- attention
typedef struct tl_attention_opts {
  tl_tensor *key_mask; // i32 [B, S]: 1 = attend, 0 = padding; NULL = all keys
  bool causal;         // query t sees keys <= t (T == S)
  float scale;         // 0 means 1/sqrt(D)
  float dropout;       // on attention probabilities (training); 0 = none
  uint64_t seed, offset;
} tl_attention_opts;
// q [B, Hq, T, D], k and v [B, Hkv, S, D] with Hq a multiple of Hkv (grouped-query:
// query head h reads kv head h / (Hq/Hkv)) -> [B, Hq, T, D]. Scores for one
// (batch, head) at a time; never the full [B, H, T, S] matrix.
tl_tensor *tl_attention(tl_tensor *q, tl_tensor *k, tl_tensor *v, const tl_attention_opts *o);
// Rotary embedding, Hugging Face Llama convention (rotate_half: pairs (i, i+D/2)),
// x [B, H, T, D], position of token t is pos0 + t, inv freq theta^(-2i/D).
tl_tensor *tl_rope(tl_tensor *x, int64_t pos0, float theta);

// --- losses and reductions
// logits [N, V], targets i32 [N] -> scalar mean over targets != ignore_index
// (0 if none). Fused log-softmax; backward is softmax - onehot.
tl_tensor *tl_cross_entropy(tl_tensor *logits, tl_tensor *targets, int ignore_index);
tl_tensor *tl_sum(tl_tensor *x);  // scalar (rank 0)
tl_tensor *tl_mean(tl_tensor *x); // scalar (rank 0)
