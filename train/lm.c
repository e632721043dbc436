// lm.c: the Llama-style decoder as a straight list of tl ops.
// Shapes: B batch, T tokens, C hidden, Hq / Hkv heads, D head dim, F ffn, V vocab.
#include "train/lm.h"

#include <string.h>

#include "train/init.h"

// --- parameters -------------------------------------------------------------------

static tl_tensor *add_matrix(tl_params *p, const char *name, int64_t rows, int64_t cols) {
  return tl_params_add(p, name, 2, (int64_t[]){rows, cols}, false);
}

static tl_tensor *add_norm(tl_params *p, const char *name, int64_t C) {
  return tl_params_add(p, name, 1, (int64_t[]){C}, true);
}

static void lm_check_config(const tl_lm_config *c) {
  TL_ASSERTF(c->vocab > 0 && c->hidden > 0 && c->layers > 0 && c->heads > 0 &&
                 c->kv_heads > 0 && c->ffn > 0 && c->max_pos > 0,
             "lm: every size must be positive");
  TL_ASSERTF(c->hidden % c->heads == 0 && (c->hidden / c->heads) % 2 == 0,
             "lm: hidden %d must split into %d heads of even size", c->hidden, c->heads);
  TL_ASSERTF(c->heads % c->kv_heads == 0, "lm: %d query heads are not a multiple of %d kv heads",
             c->heads, c->kv_heads);
  TL_ASSERTF(c->rope_theta > 0 && c->norm_eps > 0, "lm: rope_theta and norm_eps must be > 0");
}

static void declare_layer(tl_params *p, const tl_lm_config *c, int l, tl_lm_layer *L) {
  int64_t C = c->hidden, D = c->hidden / c->heads, F = c->ffn;
  int64_t Q = c->heads * D, KV = c->kv_heads * D;
  char n[96];
#define LM_NAME(fmt) (snprintf(n, sizeof n, "model.layers.%d." fmt, l), n)
  L->attn_norm = add_norm(p, LM_NAME("input_layernorm.weight"), C);
  L->q_w = add_matrix(p, LM_NAME("self_attn.q_proj.weight"), Q, C);
  L->k_w = add_matrix(p, LM_NAME("self_attn.k_proj.weight"), KV, C);
  L->v_w = add_matrix(p, LM_NAME("self_attn.v_proj.weight"), KV, C);
  L->o_w = add_matrix(p, LM_NAME("self_attn.o_proj.weight"), C, Q);
  L->mlp_norm = add_norm(p, LM_NAME("post_attention_layernorm.weight"), C);
  L->gate_w = add_matrix(p, LM_NAME("mlp.gate_proj.weight"), F, C);
  L->up_w = add_matrix(p, LM_NAME("mlp.up_proj.weight"), F, C);
  L->down_w = add_matrix(p, LM_NAME("mlp.down_proj.weight"), C, F);
#undef LM_NAME
}

void tl_lm_declare(tl_params *p, const tl_lm_config *cfg, tl_lm *m) {
  lm_check_config(cfg);
  memset(m, 0, sizeof *m);
  m->cfg = *cfg;
  m->params = p;
  m->embed = add_matrix(p, "model.embed_tokens.weight", cfg->vocab, cfg->hidden);
  m->layer = tl_xcalloc((size_t)cfg->layers, sizeof *m->layer);
  for (int l = 0; l < cfg->layers; l++) declare_layer(p, cfg, l, &m->layer[l]);
  m->norm = add_norm(p, "model.norm.weight", cfg->hidden);
  m->head = cfg->tie_embeddings ? m->embed
                                : add_matrix(p, "lm_head.weight", cfg->vocab, cfg->hidden);
}

void tl_lm_free(tl_lm *m) {
  if (!m) return;
  free(m->layer);
  m->layer = NULL;
}

void tl_lm_init_weights(tl_lm *m, uint64_t seed) {
  tl_params *p = m->params;
  TL_ASSERT(p->allocated);
  // Matrices random, RMSNorm weights (the only no-decay parameters) 1.
  for (int i = 0; i < p->count; i++) {
    tl_param_info *info = &p->info[i];
    if (info->no_decay) tl_fill_const(info->tensor, 1.0f);
    else tl_fill_normal(info->tensor, 0.02f, seed, info->offset);
  }
}

// --- forward --------------------------------------------------------------------

// [B, T, H*D] -> [B, H, T, D] as a strided view.
static tl_tensor *split_heads(tl_tensor *x, int64_t H) {
  int64_t B = x->shape[0], T = x->shape[1], HD = x->shape[2];
  return tl_transpose(tl_reshape(x, 4, (int64_t[]){B, T, H, HD / H}), 1, 2);
}

// [B, H, T, D] -> [B, T, H*D].
static tl_tensor *merge_heads(tl_tensor *x) {
  int64_t B = x->shape[0], H = x->shape[1], T = x->shape[2], D = x->shape[3];
  x = tl_contiguous(tl_transpose(x, 1, 2));
  return tl_reshape(x, 3, (int64_t[]){B, T, H * D});
}

static tl_tensor *attention(tl_lm *m, tl_lm_layer *L, tl_tensor *x, tl_tensor *key_mask) {
  const tl_lm_config *c = &m->cfg;
  // Projections, then rotary positions on queries and keys (not values).
  tl_tensor *q = split_heads(tl_linear(x, L->q_w, NULL), c->heads);   // [B, Hq, T, D]
  tl_tensor *k = split_heads(tl_linear(x, L->k_w, NULL), c->kv_heads); // [B, Hkv, T, D]
  tl_tensor *v = split_heads(tl_linear(x, L->v_w, NULL), c->kv_heads);
  q = tl_rope(q, 0, c->rope_theta);
  k = tl_rope(k, 0, c->rope_theta);

  tl_attention_opts o = {.key_mask = key_mask, .causal = true};
  tl_tensor *a = merge_heads(tl_attention(q, k, v, &o));              // [B, T, Hq*D]
  return tl_linear(a, L->o_w, NULL);                                  // [B, T, C]
}

// One pre-norm block: x += Attn(RMSNorm(x)); x += MLP(RMSNorm(x)).
static tl_tensor *block(tl_lm *m, tl_lm_layer *L, tl_tensor *x, tl_tensor *key_mask) {
  float eps = m->cfg.norm_eps;
  x = tl_add(x, attention(m, L, tl_rmsnorm(x, L->attn_norm, eps), key_mask));

  tl_tensor *h = tl_rmsnorm(x, L->mlp_norm, eps);
  h = tl_swiglu(tl_linear(h, L->gate_w, NULL), tl_linear(h, L->up_w, NULL)); // [B, T, F]
  return tl_add(x, tl_linear(h, L->down_w, NULL));
}

tl_tensor *tl_lm_forward(tl_lm *m, tl_tensor *ids, tl_tensor *key_mask) {
  TL_ASSERTF(ids->rank == 2 && ids->dtype == TL_I32, "lm: ids %s must be i32 [B, T]",
             tl_shape_str(ids));
  TL_ASSERTF(ids->shape[1] <= m->cfg.max_pos, "lm: %ld tokens exceed max_pos %d",
             (long)ids->shape[1], m->cfg.max_pos);
  tl_tensor *x = tl_embedding(m->embed, ids);                         // [B, T, C]
  for (int l = 0; l < m->cfg.layers; l++) x = block(m, &m->layer[l], x, key_mask);
  x = tl_rmsnorm(x, m->norm, m->cfg.norm_eps);
  return tl_linear(x, m->head, NULL);                                 // [B, T, V]
}

// Targets for next-token prediction: position t is scored against labels[t+1];
// the last position of each row has nothing to predict (-100). i32 [B*T].
static tl_tensor *shifted_targets(const tl_tensor *labels) {
  int64_t B = labels->shape[0], T = labels->shape[1];
  tl_tensor *y = tl_empty(TL_I32, 1, (int64_t[]){B * T});
  const int32_t *l = labels->data;
  int32_t *out = y->data;
  for (int64_t b = 0; b < B; b++)
    for (int64_t t = 0; t < T; t++) out[b * T + t] = t + 1 < T ? l[b * T + t + 1] : -100;
  return y;
}

tl_tensor *tl_lm_loss(tl_lm *m, tl_tensor *ids, tl_tensor *key_mask, tl_tensor *labels,
                      tl_tensor **logits_out) {
  TL_ASSERTF(labels->dtype == TL_I32 && tl_same_shape(ids, labels) && tl_is_contiguous(labels),
             "lm: labels %s must be contiguous i32 like ids", tl_shape_str(labels));
  tl_tensor *logits = tl_lm_forward(m, ids, key_mask);
  if (logits_out) *logits_out = logits;
  int64_t BT = tl_numel(ids), V = m->cfg.vocab;
  tl_tensor *flat = tl_reshape(logits, 2, (int64_t[]){BT, V});
  return tl_cross_entropy(flat, shifted_targets(labels), -100);
}
