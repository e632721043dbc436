// BERT model behaviour outside PyTorch parity: presets, parameter counts and
// flags, initialisation, dropout determinism, the classification head and a
// few optimisation steps that must fit a tiny batch.
#include <criterion/criterion.h>

#include "tests/core/check.h"
#include "train/bert.h"
#include "train/optim.h"

TestSuite(bert, .init = tl_test_setup, .fini = tl_test_teardown);

static tl_bert_config small_config(void) {
  return (tl_bert_config){.vocab = 50, .hidden = 16, .layers = 2, .heads = 2, .ffn = 24,
                          .max_pos = 12, .type_vocab = 3, .hidden_dropout = 0.1f,
                          .attn_dropout = 0.1f, .ln_eps = 1e-12f, .pretrain_heads = true,
                          .classes = 3};
}

// A random batch of B rows of T tokens; row 1 padded after 6 tokens.
static tl_bert_batch random_batch(int64_t B, int64_t T, int vocab, uint64_t seed) {
  tl_bert_batch b = {0};
  b.ids = tl_test_randint(seed, 5, vocab, 2, (int64_t[]){B, T});
  b.segments = tl_zeros(TL_I32, 2, (int64_t[]){B, T});
  b.key_mask = tl_zeros(TL_I32, 2, (int64_t[]){B, T});
  int32_t *seg = b.segments->data, *mask = b.key_mask->data;
  for (int64_t r = 0; r < B; r++) {
    int64_t n = r == 1 ? 6 : T;
    for (int64_t t = 0; t < n; t++) seg[r * T + t] = t < n / 2 ? 1 : 2, mask[r * T + t] = 1;
  }
  b.mbm_rows = tl_empty(TL_I32, 1, (int64_t[]){3});
  b.mbm_targets = tl_test_randint(seed + 1, 5, vocab, 1, (int64_t[]){3});
  int32_t rows[3] = {1, (int32_t)T + 2, (int32_t)(2 * T - 1)};
  memcpy(b.mbm_rows->data, rows, sizeof rows);
  b.sbp_labels = tl_test_randint(seed + 2, 0, 2, 1, (int64_t[]){B});
  return b;
}

Test(bert, presets) {
  tl_bert_config c;
  cr_assert_eq(tl_bert_preset("base", &c), TL_OK);
  cr_expect(c.hidden == 768 && c.layers == 12 && c.heads == 12 && c.ffn == 3072);
  cr_expect(c.vocab == 65541 && c.type_vocab == 3 && c.max_pos == 512);
  cr_assert_eq(tl_bert_preset("medium", &c), TL_OK);
  cr_expect(c.hidden == 512 && c.layers == 8 && c.heads == 8 && c.ffn == 2048);
  cr_assert_eq(tl_bert_preset("huge", &c), TL_ERR);
  cr_expect(strstr(tl_last_error(), "huge") && strstr(tl_last_error(), "tiny"), "%s",
            tl_last_error());

  // The base encoder (no heads, no pooler) has the 131.5M parameters
  // REFERENCE.md quotes for ET-BERT's vocabulary of 60,005; with tl's 65,541
  // ids it is larger by (65541 - 60005) * 768.
  cr_assert_eq(tl_bert_preset("base", &c), TL_OK);
  c.pretrain_heads = false;
  tl_params p;
  tl_params_init(&p);
  tl_bert m;
  tl_bert_declare(&p, &c, &m);
  int64_t n = 0;
  for (int i = 0; i < p.count; i++)
    if (!strstr(p.info[i].tensor->name, "pooler")) n += tl_numel(p.info[i].tensor);
  int64_t published = n - (int64_t)(65541 - 60005) * 768;
  cr_expect(published > 131400000 && published < 131600000, "%ld parameters", (long)published);
  tl_bert_free(&m);
  tl_params_free(&p);
}

Test(bert, no_decay_flags_and_init) {
  tl_bert_config c = small_config();
  tl_params p;
  tl_params_init(&p);
  tl_bert m;
  tl_bert_declare(&p, &c, &m);
  tl_params_alloc(&p);
  tl_bert_init_weights(&m, 7);
  for (int i = 0; i < p.count; i++) {
    const char *name = p.info[i].tensor->name;
    bool norm_or_bias = strstr(name, "LayerNorm") || strstr(name, "bias");
    cr_expect_eq(p.info[i].no_decay, norm_or_bias, "%s", name);
  }
  cr_expect_eq(((float *)m.emb_ln_g->data)[3], 1.0f);
  cr_expect_eq(((float *)m.layer[1].q_b->data)[0], 0.0f);
  // Word embeddings: mean ~0, std ~0.02 over 800 draws (5 sigma bounds).
  const float *w = m.wte->data;
  double s = 0, s2 = 0;
  int64_t n = tl_numel(m.wte);
  for (int64_t i = 0; i < n; i++) s += w[i], s2 += (double)w[i] * w[i];
  double mean = s / n, sd = sqrt(s2 / n - mean * mean);
  cr_expect(fabs(mean) < 5 * 0.02 / sqrt(n), "mean %g", mean);
  cr_expect(fabs(sd - 0.02) < 5 * 0.02 / sqrt(2.0 * n), "std %g", sd);
  // Same seed, same weights; another seed, other weights.
  float first = w[5];
  tl_bert_init_weights(&m, 7);
  cr_expect_eq(w[5], first);
  tl_bert_init_weights(&m, 8);
  cr_expect_neq(w[5], first);
  tl_bert_free(&m);
  tl_params_free(&p);
}

static float loss_with(tl_bert *m, tl_bert_batch *b, bool training, uint64_t seed) {
  tl_bert_rng rng = {.training = training, .seed = seed};
  tl_bert_stats s;
  tl_bert_pretrain_loss(m, b, 1.0f, 1.0f, &rng, &s);
  return s.loss;
}

Test(bert, dropout_is_seeded) {
  tl_bert_config c = small_config();
  tl_params p;
  tl_params_init(&p);
  tl_bert m;
  tl_bert_declare(&p, &c, &m);
  tl_params_alloc(&p);
  tl_bert_init_weights(&m, 1);
  tl_set_grad_enabled(false);
  tl_bert_batch b = random_batch(3, 10, c.vocab, 3);
  float eval1 = loss_with(&m, &b, false, 1), eval2 = loss_with(&m, &b, false, 2);
  float tr1 = loss_with(&m, &b, true, 1), tr1b = loss_with(&m, &b, true, 1);
  float tr2 = loss_with(&m, &b, true, 2);
  cr_expect_eq(eval1, eval2, "evaluation must not depend on the seed");
  cr_expect_eq(tr1, tr1b, "same seed, same dropout masks");
  cr_expect_neq(tr1, tr2, "another seed, other masks");
  cr_expect_neq(tr1, eval1, "training mode applies dropout");
  tl_bert_free(&m);
  tl_params_free(&p);
}

Test(bert, classify_and_fit_a_tiny_batch) {
  tl_bert_config c = small_config();
  c.hidden_dropout = c.attn_dropout = 0;
  tl_params p;
  tl_params_init(&p);
  tl_bert m;
  tl_bert_declare(&p, &c, &m);
  tl_params_alloc(&p);
  tl_bert_init_weights(&m, 2);
  tl_bert_batch b = random_batch(4, 10, c.vocab, 5);
  tl_tensor *labels = tl_test_randint(9, 0, 3, 1, (int64_t[]){4});
  tl_adamw opt;
  tl_adamw_init(&opt, 0.9, 0.999, 1e-6, 0.0, true);

  // Thirty AdamW steps on one batch: the classification loss must fall a lot.
  float first = 0, last = 0;
  for (int step = 0; step < 30; step++) {
    size_t mark = tl_test_arena.used;
    tl_params_zero_grad(&p);
    tl_tensor *logits = tl_bert_classify(&m, b.ids, b.segments, b.key_mask, NULL);
    cr_assert(logits->rank == 2 && logits->shape[0] == 4 && logits->shape[1] == 3);
    tl_tensor *loss = tl_cross_entropy(logits, labels, -100);
    if (step == 0) first = *(float *)loss->data;
    last = *(float *)loss->data;
    tl_backward(loss);
    tl_adamw_step(&opt, &p, 1e-2);
    tl_tape_reset();
    tl_test_arena.used = mark;
  }
  cr_log_info("fit: loss %g -> %g", first, last);
  cr_expect(last < 0.2f * first, "loss %g -> %g", first, last);
  tl_bert_free(&m);
  tl_params_free(&p);
}
