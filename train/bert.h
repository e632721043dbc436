// bert.h: the ET-BERT encoder (BERT shapes: post-LN, GELU, learned positions,
// segment embeddings) with its pre-training heads (masked-burst model, MBM, and
// same-origin-burst prediction, SBP) and a classification head for fine-tuning.
//
// Parameters live in a tl_params block under the Hugging Face BertForPreTraining
// / BertForSequenceClassification names, so HF checkpoints load by name:
//   bert.embeddings.{word,position,token_type}_embeddings.weight  [V|P|S, C]
//   bert.embeddings.LayerNorm.{weight,bias}                       [C]
//   bert.encoder.layer.L.attention.self.{query,key,value}.{weight,bias}
//   bert.encoder.layer.L.attention.output.dense.{weight,bias}
//   bert.encoder.layer.L.attention.output.LayerNorm.{weight,bias}
//   bert.encoder.layer.L.intermediate.dense.{weight,bias}         [F, C], [F]
//   bert.encoder.layer.L.output.dense.{weight,bias}               [C, F], [C]
//   bert.encoder.layer.L.output.LayerNorm.{weight,bias}
//   bert.pooler.dense.{weight,bias}                               [C, C], [C]
//   cls.predictions.transform.dense.{weight,bias}                 (MBM head)
//   cls.predictions.transform.LayerNorm.{weight,bias}
//   cls.predictions.bias                                          [V]
//   cls.seq_relationship.{weight,bias}                            [2, C] (SBP)
//   classifier.{weight,bias}                                      [K, C]
// The MBM decoder is tied to the word embeddings (one tensor, two uses), as in
// HF. Biases and LayerNorm parameters are flagged no_decay.
//
// Use: tl_bert_declare(&params, &cfg, &model); tl_params_alloc(&params);
// tl_bert_init_weights(&model, seed) or load a checkpoint by name; then, per
// step, in an arena: tl_bert_pretrain_loss(...) or tl_bert_classify(...).
#pragma once
#include "core/ops.h"

typedef struct tl_bert_config {
  int vocab;          // V: token ids in [0, vocab)
  int hidden;         // C
  int layers;
  int heads;          // H, with C % H == 0
  int ffn;            // F, the intermediate size
  int max_pos;        // P: longest sequence
  int type_vocab;     // segment ids in [0, type_vocab): ET-BERT uses 0 pad, 1 A, 2 B
  float hidden_dropout;
  float attn_dropout;
  float ln_eps;
  bool pretrain_heads; // declare cls.* (MBM and SBP heads)
  int classes;        // K > 0 declares classifier.* for fine-tuning; 0 none
} tl_bert_config;

// Fills cfg with a named size: tiny (128 hidden / 2 layers / 2 heads), mini
// (256/4/4), small (512/4/8), medium (512/8/8), base (768/12/12), large
// (1024/24/16); FFN 4x hidden, vocab 65541, 512 positions, 3 segment rows,
// dropout 0.1, eps 1e-12, pre-training heads on, no classifier. TL_ERR (with
// the known names in the message) for an unknown name.
tl_status tl_bert_preset(const char *name, tl_bert_config *cfg);

typedef struct tl_bert_layer {
  tl_tensor *q_w, *q_b, *k_w, *k_b, *v_w, *v_b; // [C, C], [C]
  tl_tensor *o_w, *o_b;                         // attention output [C, C], [C]
  tl_tensor *ln1_g, *ln1_b;                     // after attention + residual
  tl_tensor *fc_w, *fc_b;                       // [F, C], [F]
  tl_tensor *proj_w, *proj_b;                   // [C, F], [C]
  tl_tensor *ln2_g, *ln2_b;                     // after FFN + residual
} tl_bert_layer;

typedef struct tl_bert {
  tl_bert_config cfg;
  tl_params *params;                  // not owned
  tl_tensor *wte, *wpe, *wse;         // word [V, C], position [P, C], segment [S, C]
  tl_tensor *emb_ln_g, *emb_ln_b;
  tl_bert_layer *layer;               // [layers], owned (tl_bert_free)
  tl_tensor *pool_w, *pool_b;         // pooler: [CLS] -> linear -> tanh
  tl_tensor *mbm_w, *mbm_b;           // MBM transform [C, C], [C]
  tl_tensor *mbm_ln_g, *mbm_ln_b;
  tl_tensor *mbm_bias;                // [V] decoder bias (decoder weight = wte)
  tl_tensor *sbp_w, *sbp_b;           // [2, C], [2]
  tl_tensor *cls_w, *cls_b;           // [K, C], [K]
} tl_bert;

// Declares every parameter of cfg's model in p (not yet allocated) and points
// m's tensors at them; they hold data after tl_params_alloc(p). The config is
// checked (programmer error when sizes are inconsistent). Free m with
// tl_bert_free; p stays the caller's.
void tl_bert_declare(tl_params *p, const tl_bert_config *cfg, tl_bert *m);
void tl_bert_free(tl_bert *m);

// Initialises the allocated parameters: N(0, 0.02) for matrices and embeddings
// (Philox normals keyed by seed and the parameter's offset in the block, so the
// draw does not depend on thread count), zero biases, LayerNorm gamma 1.
void tl_bert_init_weights(tl_bert *m, uint64_t seed);

// Dropout randomness for one forward pass: each dropout site draws Philox
// numbers at (seed, offset) and advances offset by what it used, so every site
// and every step gets fresh numbers that a resumed run draws again.
typedef struct tl_bert_rng {
  bool training;     // false: no dropout (evaluation)
  uint64_t seed;     // e.g. run seed mixed with the step number
  uint64_t offset;   // advanced by the forward pass
} tl_bert_rng;

// The encoder: ids, segments and key_mask are i32 [B, T] (key_mask 1 = token,
// 0 = padding, NULL = no padding; segments NULL = all 0), T <= max_pos. Returns
// hidden [B, T, C] in the current arena, recorded on the tape when grad mode is on.
tl_tensor *tl_bert_encode(tl_bert *m, tl_tensor *ids, tl_tensor *segments,
                          tl_tensor *key_mask, tl_bert_rng *rng);

// The pooler on the [CLS] (first) position: tanh(W h[:, 0] + b) -> [B, C].
tl_tensor *tl_bert_pool(tl_bert *m, tl_tensor *hidden);

// MBM logits at the given rows of hidden viewed as [B*T, C] (rows i32 [M],
// row = b*T + t): linear, GELU, LayerNorm, linear to V (tied) -> [M, V].
tl_tensor *tl_bert_mbm_logits(tl_bert *m, tl_tensor *hidden, tl_tensor *rows);

// SBP logits from the pooled vector: [B, C] -> [B, 2].
tl_tensor *tl_bert_sbp_logits(tl_bert *m, tl_tensor *pooled);

// One pre-training batch (all i32): ids, segments, key_mask [B, T] (key_mask may
// be NULL); mbm_rows [M] = b*T + t of the masked positions and mbm_targets [M]
// their original ids; sbp_labels [B] (0 = B is A's own second half, 1 = B comes
// from another burst).
typedef struct tl_bert_batch {
  tl_tensor *ids, *segments, *key_mask;
  tl_tensor *mbm_rows, *mbm_targets;
  tl_tensor *sbp_labels;
} tl_bert_batch;

typedef struct tl_bert_stats {
  float loss;               // w_mbm * mbm_loss + w_sbp * sbp_loss
  float mbm_loss, mbm_acc;  // mean cross entropy and top-1 accuracy at masked rows
  float sbp_loss, sbp_acc;
  int64_t mbm_count;        // M
} tl_bert_stats;

// The pre-training loss w_mbm * MBM + w_sbp * SBP as a scalar tensor on the tape
// (call tl_backward on it). MBM is evaluated only at the masked rows. stats (may
// be NULL) receives the parts and accuracies. With M == 0 the MBM part is 0.
tl_tensor *tl_bert_pretrain_loss(tl_bert *m, const tl_bert_batch *b, float w_mbm,
                                 float w_sbp, tl_bert_rng *rng, tl_bert_stats *stats);

// Fine-tuning logits [B, K]: encoder, pooler, dropout, classifier. Needs
// cfg.classes > 0.
tl_tensor *tl_bert_classify(tl_bert *m, tl_tensor *ids, tl_tensor *segments,
                            tl_tensor *key_mask, tl_bert_rng *rng);

// Top-1 accuracy of logits [N, K] against i32 targets [N] (targets < 0 are
// skipped); 0 when none count. Reads forward values; not recorded.
float tl_logits_accuracy(const tl_tensor *logits, const tl_tensor *targets);
