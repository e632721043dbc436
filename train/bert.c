// bert.c: the ET-BERT encoder and its heads as a straight list of tl ops.
// Shapes: B batch, T tokens, C hidden, H heads, D = C / H, F ffn, V vocab.
#include "train/bert.h"

#include <string.h>

#include "train/init.h"

// --- configuration --------------------------------------------------------------

typedef struct {
  const char *name;
  int hidden, layers, heads;
} bert_size;

// ET-BERT's shipped sizes (REFERENCE.md), FFN 4x hidden.
static const bert_size bert_sizes[] = {
    {"tiny", 128, 2, 2},   {"mini", 256, 4, 4},   {"small", 512, 4, 8},
    {"medium", 512, 8, 8}, {"base", 768, 12, 12}, {"large", 1024, 24, 16},
};

tl_status tl_bert_preset(const char *name, tl_bert_config *cfg) {
  for (size_t i = 0; i < sizeof bert_sizes / sizeof *bert_sizes; i++) {
    const bert_size *s = &bert_sizes[i];
    if (strcmp(s->name, name)) continue;
    *cfg = (tl_bert_config){.vocab = 65541, .hidden = s->hidden, .layers = s->layers,
                            .heads = s->heads, .ffn = 4 * s->hidden, .max_pos = 512,
                            .type_vocab = 3, .hidden_dropout = 0.1f, .attn_dropout = 0.1f,
                            .ln_eps = 1e-12f, .pretrain_heads = true, .classes = 0};
    return TL_OK;
  }
  tl_set_error("unknown BERT size '%s' (known: tiny, mini, small, medium, base, large)", name);
  return TL_ERR;
}

static void bert_check_config(const tl_bert_config *c) {
  TL_ASSERTF(c->vocab > 0 && c->hidden > 0 && c->layers > 0 && c->heads > 0 && c->ffn > 0 &&
                 c->max_pos > 0 && c->type_vocab > 0 && c->classes >= 0,
             "bert: every size must be positive");
  TL_ASSERTF(c->hidden % c->heads == 0, "bert: hidden %d is not a multiple of heads %d",
             c->hidden, c->heads);
  TL_ASSERTF(c->hidden_dropout >= 0 && c->hidden_dropout < 1 && c->attn_dropout >= 0 &&
                 c->attn_dropout < 1,
             "bert: dropout probabilities must be in [0, 1)");
}

// --- parameters -------------------------------------------------------------------

static tl_tensor *add1(tl_params *p, const char *name, int64_t n, bool no_decay) {
  return tl_params_add(p, name, 1, (int64_t[]){n}, no_decay);
}

static tl_tensor *add2(tl_params *p, const char *name, int64_t rows, int64_t cols) {
  return tl_params_add(p, name, 2, (int64_t[]){rows, cols}, false);
}

// A linear layer "prefix.weight" [out, in] and "prefix.bias" [out].
static void add_linear(tl_params *p, const char *prefix, int64_t out, int64_t in,
                       tl_tensor **w, tl_tensor **b) {
  *w = add2(p, tl_fmt("%s.weight", prefix), out, in);
  *b = add1(p, tl_fmt("%s.bias", prefix), out, true);
}

static void add_layernorm(tl_params *p, const char *prefix, int64_t C, tl_tensor **g,
                          tl_tensor **b) {
  *g = add1(p, tl_fmt("%s.weight", prefix), C, true);
  *b = add1(p, tl_fmt("%s.bias", prefix), C, true);
}

static void declare_layer(tl_params *p, const tl_bert_config *c, int l, tl_bert_layer *L) {
  char pre[96];
  int64_t C = c->hidden, F = c->ffn;
  snprintf(pre, sizeof pre, "bert.encoder.layer.%d.attention.self.query", l);
  add_linear(p, pre, C, C, &L->q_w, &L->q_b);
  snprintf(pre, sizeof pre, "bert.encoder.layer.%d.attention.self.key", l);
  add_linear(p, pre, C, C, &L->k_w, &L->k_b);
  snprintf(pre, sizeof pre, "bert.encoder.layer.%d.attention.self.value", l);
  add_linear(p, pre, C, C, &L->v_w, &L->v_b);
  snprintf(pre, sizeof pre, "bert.encoder.layer.%d.attention.output.dense", l);
  add_linear(p, pre, C, C, &L->o_w, &L->o_b);
  snprintf(pre, sizeof pre, "bert.encoder.layer.%d.attention.output.LayerNorm", l);
  add_layernorm(p, pre, C, &L->ln1_g, &L->ln1_b);
  snprintf(pre, sizeof pre, "bert.encoder.layer.%d.intermediate.dense", l);
  add_linear(p, pre, F, C, &L->fc_w, &L->fc_b);
  snprintf(pre, sizeof pre, "bert.encoder.layer.%d.output.dense", l);
  add_linear(p, pre, C, F, &L->proj_w, &L->proj_b);
  snprintf(pre, sizeof pre, "bert.encoder.layer.%d.output.LayerNorm", l);
  add_layernorm(p, pre, C, &L->ln2_g, &L->ln2_b);
}

void tl_bert_declare(tl_params *p, const tl_bert_config *cfg, tl_bert *m) {
  bert_check_config(cfg);
  memset(m, 0, sizeof *m);
  m->cfg = *cfg;
  m->params = p;
  int64_t C = cfg->hidden;

  // Embeddings: word, position, segment, then their LayerNorm.
  m->wte = add2(p, "bert.embeddings.word_embeddings.weight", cfg->vocab, C);
  m->wpe = add2(p, "bert.embeddings.position_embeddings.weight", cfg->max_pos, C);
  m->wse = add2(p, "bert.embeddings.token_type_embeddings.weight", cfg->type_vocab, C);
  add_layernorm(p, "bert.embeddings.LayerNorm", C, &m->emb_ln_g, &m->emb_ln_b);

  m->layer = tl_xcalloc((size_t)cfg->layers, sizeof *m->layer);
  for (int l = 0; l < cfg->layers; l++) declare_layer(p, cfg, l, &m->layer[l]);
  add_linear(p, "bert.pooler.dense", C, C, &m->pool_w, &m->pool_b);

  // Heads: pre-training (MBM decoder weight is wte itself) and classification.
  if (cfg->pretrain_heads) {
    add_linear(p, "cls.predictions.transform.dense", C, C, &m->mbm_w, &m->mbm_b);
    add_layernorm(p, "cls.predictions.transform.LayerNorm", C, &m->mbm_ln_g, &m->mbm_ln_b);
    m->mbm_bias = add1(p, "cls.predictions.bias", cfg->vocab, true);
    add_linear(p, "cls.seq_relationship", 2, C, &m->sbp_w, &m->sbp_b);
  }
  if (cfg->classes > 0) add_linear(p, "classifier", cfg->classes, C, &m->cls_w, &m->cls_b);
}

void tl_bert_free(tl_bert *m) {
  if (!m) return;
  free(m->layer);
  m->layer = NULL;
}

void tl_bert_init_weights(tl_bert *m, uint64_t seed) {
  tl_params *p = m->params;
  TL_ASSERT(p->allocated);
  for (int i = 0; i < p->count; i++) {
    tl_param_info *info = &p->info[i];
    tl_tensor *t = info->tensor;
    size_t len = strlen(t->name);
    bool bias = len >= 4 && !strcmp(t->name + len - 4, "bias");

    // Matrices and embeddings random; biases (LayerNorm beta too) 0; the
    // remaining no-decay parameters are LayerNorm gammas: 1.
    if (!info->no_decay) tl_fill_normal(t, 0.02f, seed, info->offset);
    else tl_fill_const(t, bias ? 0.0f : 1.0f);
  }
}

// --- forward --------------------------------------------------------------------

// Dropout at one site; draws numel(x) counters from rng and advances it.
static tl_tensor *dropout(tl_tensor *x, float p, tl_bert_rng *rng) {
  if (!rng || !rng->training || p == 0) return x;
  tl_tensor *y = tl_dropout(x, p, rng->seed, rng->offset);
  rng->offset += (uint64_t)tl_numel(x);
  return y;
}

// Position ids 0..T-1 for every row: i32 [B, T] in the arena.
static tl_tensor *position_ids(int64_t B, int64_t T) {
  tl_tensor *pos = tl_empty(TL_I32, 2, (int64_t[]){B, T});
  int32_t *x = pos->data;
  for (int64_t i = 0; i < B * T; i++) x[i] = (int32_t)(i % T);
  return pos;
}

static tl_tensor *embed(tl_bert *m, tl_tensor *ids, tl_tensor *segments, tl_bert_rng *rng) {
  int64_t B = ids->shape[0], T = ids->shape[1];
  TL_ASSERTF(T <= m->cfg.max_pos, "bert: %ld tokens exceed max_pos %d", (long)T,
             m->cfg.max_pos);
  // Sum of word, position and segment rows, then LayerNorm and dropout.
  tl_tensor *x = tl_embedding(m->wte, ids);                        // [B, T, C]
  x = tl_add(x, tl_embedding(m->wpe, position_ids(B, T)));
  x = tl_add(x, tl_embedding(m->wse, segments));
  x = tl_layernorm(x, m->emb_ln_g, m->emb_ln_b, m->cfg.ln_eps);
  return dropout(x, m->cfg.hidden_dropout, rng);
}

// [B, T, C] -> [B, H, T, D] as a strided view (attention reads strided rows).
static tl_tensor *split_heads(tl_tensor *x, int64_t H) {
  int64_t B = x->shape[0], T = x->shape[1], C = x->shape[2];
  return tl_transpose(tl_reshape(x, 4, (int64_t[]){B, T, H, C / H}), 1, 2);
}

// [B, H, T, D] -> [B, T, C].
static tl_tensor *merge_heads(tl_tensor *x) {
  int64_t B = x->shape[0], H = x->shape[1], T = x->shape[2], D = x->shape[3];
  x = tl_contiguous(tl_transpose(x, 1, 2));
  return tl_reshape(x, 3, (int64_t[]){B, T, H * D});
}

static tl_tensor *self_attention(tl_bert *m, tl_bert_layer *L, tl_tensor *x,
                                 tl_tensor *key_mask, tl_bert_rng *rng) {
  int64_t H = m->cfg.heads;
  tl_tensor *q = split_heads(tl_linear(x, L->q_w, L->q_b), H);     // [B, H, T, D]
  tl_tensor *k = split_heads(tl_linear(x, L->k_w, L->k_b), H);
  tl_tensor *v = split_heads(tl_linear(x, L->v_w, L->v_b), H);
  tl_attention_opts o = {.key_mask = key_mask};
  if (rng && rng->training && m->cfg.attn_dropout > 0) {
    // One counter per (b, h, t, s) score.
    o.dropout = m->cfg.attn_dropout, o.seed = rng->seed, o.offset = rng->offset;
    rng->offset += (uint64_t)(q->shape[0] * q->shape[1] * q->shape[2] * k->shape[2]);
  }
  tl_tensor *a = merge_heads(tl_attention(q, k, v, &o));           // [B, T, C]
  return tl_linear(a, L->o_w, L->o_b);
}

// One post-LN encoder layer: x = LN(x + Attn(x)); x = LN(x + FFN(x)).
static tl_tensor *encoder_layer(tl_bert *m, tl_bert_layer *L, tl_tensor *x,
                                tl_tensor *key_mask, tl_bert_rng *rng) {
  float eps = m->cfg.ln_eps, p = m->cfg.hidden_dropout;
  tl_tensor *a = dropout(self_attention(m, L, x, key_mask, rng), p, rng);
  x = tl_layernorm(tl_add(x, a), L->ln1_g, L->ln1_b, eps);

  tl_tensor *h = tl_gelu(tl_linear(x, L->fc_w, L->fc_b));          // [B, T, F]
  h = dropout(tl_linear(h, L->proj_w, L->proj_b), p, rng);         // [B, T, C]
  return tl_layernorm(tl_add(x, h), L->ln2_g, L->ln2_b, eps);
}

tl_tensor *tl_bert_encode(tl_bert *m, tl_tensor *ids, tl_tensor *segments,
                          tl_tensor *key_mask, tl_bert_rng *rng) {
  TL_ASSERTF(ids->rank == 2 && ids->dtype == TL_I32, "bert: ids %s must be i32 [B, T]",
             tl_shape_str(ids));
  // No segments: every token in segment 0, as Hugging Face defaults.
  if (!segments) segments = tl_zeros(TL_I32, 2, ids->shape);
  TL_ASSERTF(segments->dtype == TL_I32 && tl_same_shape(ids, segments),
             "bert: segments %s must be i32 like ids", tl_shape_str(segments));
  tl_tensor *x = embed(m, ids, segments, rng);
  for (int l = 0; l < m->cfg.layers; l++) x = encoder_layer(m, &m->layer[l], x, key_mask, rng);
  return x;
}

// --- heads ----------------------------------------------------------------------

// hidden [B, T, C] seen as [B*T, C] (contiguous: no copy).
static tl_tensor *flat_rows(tl_tensor *hidden) {
  int64_t B = hidden->shape[0], T = hidden->shape[1], C = hidden->shape[2];
  return tl_reshape(tl_contiguous(hidden), 2, (int64_t[]){B * T, C});
}

tl_tensor *tl_bert_pool(tl_bert *m, tl_tensor *hidden) {
  int64_t B = hidden->shape[0], T = hidden->shape[1];
  // Row b*T of the flattened hidden states is sequence b's [CLS].
  tl_tensor *rows = tl_empty(TL_I32, 1, (int64_t[]){B});
  for (int64_t b = 0; b < B; b++) ((int32_t *)rows->data)[b] = (int32_t)(b * T);
  tl_tensor *cls = tl_gather_rows(flat_rows(hidden), rows);        // [B, C]
  return tl_tanh(tl_linear(cls, m->pool_w, m->pool_b));
}

tl_tensor *tl_bert_mbm_logits(tl_bert *m, tl_tensor *hidden, tl_tensor *rows) {
  TL_ASSERTF(m->cfg.pretrain_heads, "bert: model declared without pre-training heads");
  tl_tensor *h = tl_gather_rows(flat_rows(hidden), rows);          // [M, C]
  h = tl_gelu(tl_linear(h, m->mbm_w, m->mbm_b));
  h = tl_layernorm(h, m->mbm_ln_g, m->mbm_ln_b, m->cfg.ln_eps);
  return tl_linear(h, m->wte, m->mbm_bias);                        // [M, V], tied
}

tl_tensor *tl_bert_sbp_logits(tl_bert *m, tl_tensor *pooled) {
  TL_ASSERTF(m->cfg.pretrain_heads, "bert: model declared without pre-training heads");
  return tl_linear(pooled, m->sbp_w, m->sbp_b);                    // [B, 2]
}

float tl_logits_accuracy(const tl_tensor *logits, const tl_tensor *targets) {
  TL_ASSERT(logits->rank == 2 && tl_is_contiguous(logits) && targets->dtype == TL_I32);
  int64_t N = logits->shape[0], K = logits->shape[1], hit = 0, count = 0;
  const float *x = logits->data;
  const int32_t *y = targets->data;
  // Rows are independent arg-max scans (N x V floats for the MBM head).
#pragma omp parallel for reduction(+ : hit, count) schedule(static)
  for (int64_t i = 0; i < N; i++) {
    if (y[i] < 0) continue;
    const float *row = x + i * K;
    float best_v = row[0];
    int64_t best = 0;
    for (int64_t k = 1; k < K; k++)
      if (row[k] > best_v) best_v = row[k], best = k;
    hit += best == y[i];
    count++;
  }
  return count ? (float)hit / (float)count : 0.0f;
}

tl_tensor *tl_bert_pretrain_loss(tl_bert *m, const tl_bert_batch *b, float w_mbm,
                                 float w_sbp, tl_bert_rng *rng, tl_bert_stats *stats) {
  tl_tensor *hidden = tl_bert_encode(m, b->ids, b->segments, b->key_mask, rng);

  // MBM: the vocabulary projection only at the M masked rows.
  int64_t M = tl_numel(b->mbm_rows);
  tl_tensor *mbm_logits = NULL, *mbm = tl_zeros(TL_F32, 0, NULL);
  if (M > 0) {
    mbm_logits = tl_bert_mbm_logits(m, hidden, b->mbm_rows);
    mbm = tl_cross_entropy(mbm_logits, b->mbm_targets, -100);
  }

  // SBP: pooled [CLS] to two classes.
  tl_tensor *sbp_logits = tl_bert_sbp_logits(m, tl_bert_pool(m, hidden));
  tl_tensor *sbp = tl_cross_entropy(sbp_logits, b->sbp_labels, -100);
  tl_tensor *loss = tl_add(tl_scale(mbm, w_mbm), tl_scale(sbp, w_sbp));

  if (stats) {
    stats->mbm_loss = *(float *)mbm->data;
    stats->sbp_loss = *(float *)sbp->data;
    stats->loss = *(float *)loss->data;
    stats->mbm_acc = M > 0 ? tl_logits_accuracy(mbm_logits, b->mbm_targets) : 0.0f;
    stats->sbp_acc = tl_logits_accuracy(sbp_logits, b->sbp_labels);
    stats->mbm_count = M;
  }
  return loss;
}

tl_tensor *tl_bert_classify(tl_bert *m, tl_tensor *ids, tl_tensor *segments,
                            tl_tensor *key_mask, tl_bert_rng *rng) {
  TL_ASSERTF(m->cfg.classes > 0, "bert: model declared without a classifier");
  tl_tensor *pooled = tl_bert_pool(m, tl_bert_encode(m, ids, segments, key_mask, rng));
  pooled = dropout(pooled, m->cfg.hidden_dropout, rng);
  return tl_linear(pooled, m->cls_w, m->cls_b);                    // [B, K]
}
