#!/usr/bin/env python3
"""Builds the PyTorch parity fixtures for tl's models (tests/fixtures/*.safetensors).

Run by hand when a fixture must change (CI never runs torch):
    /opt/fixvenv/bin/python tests/make_fixtures.py

Writes
  bert_tiny.safetensors   a 2-layer BertForPreTraining: parameters (Hugging Face
                          names), inputs, prediction and seq_relationship logits,
                          the MLM, NSP and total losses, and "grad."+name for
                          every parameter; plus one AdamW step ("updated."+name)
                          after global-norm clipping at 1.0; plus a
                          BertForSequenceClassification head on the same encoder
                          ("classifier.*", "seqcls.*").
  llama_tiny.safetensors  a 2-layer LlamaForCausalLM (GQA, untied lm_head):
                          parameters, inputs, labels, logits, loss, gradients;
                          plus logits with a right-padding attention mask
                          ("masked.*").

The weights are drawn in float32 (that is what the file stores and what tl
loads), but every reference value is computed in float64 from those same
weights and then rounded to float32, so the fixtures carry no float32
rounding of their own: tl's float32 result is compared with the exact one.

Sizes: hidden 64 and the head counts follow the brief; vocabulary 211 (prime),
32 positions and narrower FFNs (BERT 128, Llama 90) keep all fixtures under
2 MB, since the BERT file holds three copies of its weights.
"""
import math
import os

import torch
from safetensors.torch import save_file
from transformers import (BertConfig, BertForPreTraining, BertForSequenceClassification,
                          LlamaConfig, LlamaForCausalLM)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
VOCAB = 211


def fill_weights(model, gen):
    """Seeded init: N(0, 0.02) for matrices and embeddings; norms' weights
    1 + 0.1 N(0,1) and all biases 0.1 N(0,1), so a swapped or dropped norm or
    bias shows up in the comparison instead of hiding behind ones and zeros."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif "LayerNorm" in name or "norm" in name.split(".")[-2]:
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.02 * noise)


def f32(t):
    return t.detach().to(torch.float32).contiguous().clone()


def params_and_grads(model, out):
    """Every parameter (deduplicated, so tied weights appear once) and its grad."""
    for name, p in model.named_parameters():
        out[name] = f32(p)
        out["grad." + name] = f32(p.grad)


# --- BERT -------------------------------------------------------------------

def bert_config():
    return BertConfig(vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2,
                      num_attention_heads=2, intermediate_size=128,
                      max_position_embeddings=32, type_vocab_size=3, hidden_act="gelu",
                      hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                      layer_norm_eps=1e-12, attn_implementation="eager")


def bert_inputs(gen):
    """B=3, T=17. Sequence 1 is padded after 11 tokens. Segments follow ET-BERT:
    1 for the first half, 2 for the second, 0 on padding. [CLS]=2, [SEP]=1."""
    B, T = 3, 17
    ids = torch.randint(5, VOCAB, (B, T), generator=gen)
    lengths = [17, 11, 17]
    mask = torch.zeros(B, T, dtype=torch.long)
    seg = torch.zeros(B, T, dtype=torch.long)
    for b, n in enumerate(lengths):
        mask[b, :n] = 1
        ids[b, 0] = 2
        ids[b, n // 2] = 1
        ids[b, n - 1] = 1
        seg[b, :n // 2 + 1] = 1
        seg[b, n // 2 + 1:n] = 2
        ids[b, n:] = 0
    # MLM labels: a few masked positions per row (none on specials or padding).
    labels = torch.full((B, T), -100, dtype=torch.long)
    for b, positions in enumerate([[3, 5, 12], [2, 7], [1, 4, 10, 15]]):
        for t in positions:
            labels[b, t] = ids[b, t]
            ids[b, t] = 4  # [MASK]
    labels[2, 10] = 17  # one target that differs from the original token
    nsp = torch.tensor([0, 1, 1])
    return ids, seg, mask, labels, nsp


def bert_fixture():
    gen = torch.Generator().manual_seed(1234)
    model = BertForPreTraining(bert_config())
    fill_weights(model, gen)
    ids, seg, mask, labels, nsp = bert_inputs(gen)
    out = {}
    out["input_ids"] = ids.to(torch.int32)
    out["token_type_ids"] = seg.to(torch.int32)
    out["attention_mask"] = mask.to(torch.int32)
    out["labels"] = labels.to(torch.int32)
    out["next_sentence_label"] = nsp.to(torch.int32)
    for name, p in model.named_parameters():
        out[name] = f32(p)

    # Forward and backward in float64 from the float32 weights.
    model = model.double()
    model.train()  # dropout probabilities are 0, so train mode is deterministic
    res = model(input_ids=ids, token_type_ids=seg, attention_mask=mask)
    V = model.config.vocab_size
    mlm = torch.nn.functional.cross_entropy(res.prediction_logits.view(-1, V),
                                            labels.view(-1), ignore_index=-100)
    nsp_loss = torch.nn.functional.cross_entropy(res.seq_relationship_logits, nsp)
    total = mlm + nsp_loss
    # The same total through Hugging Face's own loss path, as a cross-check.
    hf = model(input_ids=ids, token_type_ids=seg, attention_mask=mask, labels=labels,
               next_sentence_label=nsp).loss
    assert abs(hf.item() - total.item()) < 1e-5 * total.item(), (hf.item(), total.item())
    total.backward()
    out["prediction_logits"] = f32(res.prediction_logits)
    out["seq_relationship_logits"] = f32(res.seq_relationship_logits)
    out["loss"] = f32(total)
    out["loss_mlm"] = f32(mlm)
    out["loss_nsp"] = f32(nsp_loss)
    for name, p in model.named_parameters():
        out["grad." + name] = f32(p.grad)
    bert_classifier(model, gen, ids, seg, mask, out)
    bert_adamw_step(model, out)
    return out


def bert_classifier(pretrain, gen, ids, seg, mask, out):
    """Fine-tuning head: BertForSequenceClassification (pooler, then a linear to
    K=5 classes) on the same encoder weights. Saves the classifier weights, the
    logits, the cross-entropy loss and the gradients of the head and pooler
    (the encoder's gradient path is already covered by the MLM/NSP check)."""
    cfg = bert_config()
    cfg.num_labels = 5
    model = BertForSequenceClassification(cfg)
    model.bert.load_state_dict({k[5:]: v.float() for k, v in pretrain.state_dict().items()
                                if k.startswith("bert.")}, strict=True)
    with torch.no_grad():
        model.classifier.weight.copy_(0.02 * torch.randn(5, 64, generator=gen))
        model.classifier.bias.copy_(0.1 * torch.randn(5, generator=gen))
    labels = torch.tensor([3, 0, 4])
    out["seqcls.labels"] = labels.to(torch.int32)
    out["classifier.weight"] = f32(model.classifier.weight)
    out["classifier.bias"] = f32(model.classifier.bias)
    model = model.double()
    res = model(input_ids=ids, token_type_ids=seg, attention_mask=mask)
    loss = torch.nn.functional.cross_entropy(res.logits, labels)
    loss.backward()
    out["seqcls.logits"] = f32(res.logits)
    out["seqcls.loss"] = f32(loss)
    for name in ["classifier.weight", "classifier.bias", "bert.pooler.dense.weight",
                 "bert.pooler.dense.bias"]:
        out["seqcls.grad." + name] = f32(model.get_parameter(name).grad)


def bert_adamw_step(model, out):
    """One optimizer step after the backward above: clip the global gradient
    norm to 1.0, then AdamW (lr 1e-3, betas (0.9, 0.999), eps 1e-6, bias
    correction) with weight decay 0.01 except on biases and LayerNorm weights."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    assert norm.item() > 1.0, "clipping must engage for the fixture to test it"
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-3, betas=(0.9, 0.999), eps=1e-6)
    opt.step()
    out["grad_norm"] = f32(norm)
    for name, p in model.named_parameters():
        out["updated." + name] = f32(p)


# --- Llama ------------------------------------------------------------------

def llama_config():
    return LlamaConfig(vocab_size=VOCAB, hidden_size=64, intermediate_size=90,
                       num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                       max_position_embeddings=32, rms_norm_eps=1e-6, rope_theta=10000.0,
                       tie_word_embeddings=False, attention_bias=False, mlp_bias=False,
                       attn_implementation="eager")


def llama_fixture():
    gen = torch.Generator().manual_seed(5678)
    model = LlamaForCausalLM(llama_config())
    fill_weights(model, gen)
    B, T = 2, 17
    ids = torch.randint(0, VOCAB, (B, T), generator=gen)
    labels = ids.clone()
    labels[0, :5] = -100   # a prompt whose tokens carry no loss
    labels[1, 9] = -100
    labels[1, 16] = -100
    out = {"input_ids": ids.to(torch.int32), "labels": labels.to(torch.int32)}
    for name, p in model.named_parameters():
        out[name] = f32(p)

    model = model.double()
    res = model(input_ids=ids, labels=labels)
    # The shifted loss in float64 (token t predicts label t+1); Hugging Face's
    # own loss casts logits to float32, so it only agrees to float32 precision.
    V = model.config.vocab_size
    loss = torch.nn.functional.cross_entropy(res.logits[:, :-1].reshape(-1, V),
                                             labels[:, 1:].reshape(-1), ignore_index=-100)
    assert abs(loss.item() - res.loss.item()) < 1e-5 * loss.item()
    loss.backward()
    out["logits"] = f32(res.logits)
    out["loss"] = f32(loss)
    for name, p in model.named_parameters():
        out["grad." + name] = f32(p.grad)

    # Right padding: row 1 keeps 12 tokens. Padded queries then see only the
    # real keys, so their logits test the key mask together with the causal one.
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 12:] = 0
    with torch.no_grad():
        res = model(input_ids=ids, attention_mask=mask)
    out["masked.attention_mask"] = mask.to(torch.int32)
    out["masked.logits"] = f32(res.logits)
    return out


def main():
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # fixed reduction order: the same bytes on every run
    os.makedirs(OUT, exist_ok=True)
    meta = {"generator": "tests/make_fixtures.py", "torch": torch.__version__}
    for name, build in [("bert_tiny", bert_fixture), ("llama_tiny", llama_fixture)]:
        tensors = build()
        path = os.path.join(OUT, name + ".safetensors")
        save_file(tensors, path, metadata=meta)
        print(f"{path}: {len(tensors)} tensors, {os.path.getsize(path) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
