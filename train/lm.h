// lm.h: the decoder-only language model, Llama-style: token embeddings, N
// pre-norm blocks (RMSNorm, causal grouped-query attention with rotary
// positions, RMSNorm, SwiGLU MLP), a final RMSNorm and the output projection.
//
// Parameters use the Hugging Face LlamaForCausalLM names, so HF checkpoints
// load by name (weights [out, in]; no biases):
//   model.embed_tokens.weight                         [V, C]
//   model.layers.L.input_layernorm.weight             [C]
//   model.layers.L.self_attn.q_proj.weight            [Hq*D, C]
//   model.layers.L.self_attn.{k,v}_proj.weight        [Hkv*D, C]
//   model.layers.L.self_attn.o_proj.weight            [C, Hq*D]
//   model.layers.L.post_attention_layernorm.weight    [C]
//   model.layers.L.mlp.{gate,up}_proj.weight          [F, C]
//   model.layers.L.mlp.down_proj.weight               [C, F]
//   model.norm.weight                                 [C]
//   lm_head.weight                                    [V, C] (absent when tied)
// Norm weights are flagged no_decay.
#pragma once
#include "core/ops.h"

typedef struct tl_lm_config {
  int vocab;          // V
  int hidden;         // C
  int layers;
  int heads;          // Hq
  int kv_heads;       // Hkv, dividing Hq (grouped-query attention)
  int ffn;            // F
  int max_pos;        // longest sequence
  float rope_theta;   // e.g. 10000
  float norm_eps;     // RMSNorm epsilon, e.g. 1e-6
  bool tie_embeddings; // true: the output projection is embed_tokens (no lm_head)
} tl_lm_config;

typedef struct tl_lm_layer {
  tl_tensor *attn_norm;                 // [C]
  tl_tensor *q_w, *k_w, *v_w, *o_w;
  tl_tensor *mlp_norm;                  // [C]
  tl_tensor *gate_w, *up_w, *down_w;
} tl_lm_layer;

typedef struct tl_lm {
  tl_lm_config cfg;
  tl_params *params;       // not owned
  tl_tensor *embed;        // [V, C]
  tl_lm_layer *layer;      // [layers], owned
  tl_tensor *norm;         // [C]
  tl_tensor *head;         // [V, C]: lm_head.weight, or embed when tied
} tl_lm;

// Declares every parameter in p (not yet allocated) and points m at them.
// Programmer error on inconsistent sizes (C % Hq, Hq % Hkv, even head dim).
// Free m with tl_lm_free; p stays the caller's.
void tl_lm_declare(tl_params *p, const tl_lm_config *cfg, tl_lm *m);
void tl_lm_free(tl_lm *m);

// N(0, 0.02) for matrices and embeddings (Philox, keyed by seed and block
// offset), norm weights 1.
void tl_lm_init_weights(tl_lm *m, uint64_t seed);

// Logits [B, T, V] for ids i32 [B, T] (T <= max_pos); key_mask i32 [B, T]
// (1 = token, 0 = padding; NULL = none) hides padded keys on top of the causal
// mask. Positions are 0..T-1 in every row (right padding). Arena memory.
tl_tensor *tl_lm_forward(tl_lm *m, tl_tensor *ids, tl_tensor *key_mask);

// Causal-LM loss as Hugging Face computes it: the logit at position t is scored
// against labels[t + 1] (labels i32 [B, T], usually ids with -100 where no loss
// is wanted, e.g. prompt tokens and padding); mean over scored positions, 0 when
// none. Returns the scalar on the tape; *logits_out (may be NULL) gets the
// logits [B, T, V].
tl_tensor *tl_lm_loss(tl_lm *m, tl_tensor *ids, tl_tensor *key_mask, tl_tensor *labels,
                      tl_tensor **logits_out);
