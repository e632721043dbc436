#!/usr/bin/env python3
"""Checks that a tl-pretrain checkpoint loads in PyTorch.

usage: check_checkpoint_torch.py CHECKPOINT.safetensors | RUN_DIR

Reads the file with the safetensors package into torch tensors, checks the
layout train/checkpoint.h documents (metadata, optim.m./optim.v. moments shaped
like their weights, finite values, v >= 0), and, when transformers is
installed, loads the weights into a BertForPreTraining built from the config in
the metadata (no unexpected or missing tensors except the tied decoder) and runs
a forward pass. Exits 1 with a reason on any mismatch; prints "skipped" and
exits 0 when torch or safetensors is not installed.
"""
import glob
import os
import sys


def fail(msg):
    print(f"check_checkpoint_torch: FAIL: {msg}")
    sys.exit(1)


def newest_checkpoint(path):
    if os.path.isfile(path):
        return path
    files = sorted(glob.glob(os.path.join(path, "checkpoints", "step-*.safetensors")))
    if not files:
        fail(f"{path}: no checkpoints/step-*.safetensors")
    return files[-1]


def check_layout(tensors, meta, torch):
    if meta.get("format") != "tl-checkpoint/1":
        fail(f"metadata format is {meta.get('format')!r}, expected 'tl-checkpoint/1'")
    for key in ("step", "adam_t", "seed", "loader_epoch", "loader_cursor", "config"):
        if key not in meta:
            fail(f"metadata lacks {key!r}")
    int(meta["step"]), int(meta["adam_t"]), int(meta["seed"])
    weights = {k: v for k, v in tensors.items() if not k.startswith("optim.")}
    moments = {k: v for k, v in tensors.items() if k.startswith("optim.")}
    if not weights:
        fail("no weights")
    for name, w in weights.items():
        if w.dtype != torch.float32:
            fail(f"{name}: dtype {w.dtype}, expected float32")
        if not torch.isfinite(w).all():
            fail(f"{name}: non-finite values")
        if moments:
            m, v = moments.get("optim.m." + name), moments.get("optim.v." + name)
            if m is None or v is None:
                fail(f"{name}: moments missing")
            if m.shape != w.shape or v.shape != w.shape:
                fail(f"{name}: moment shapes {tuple(m.shape)} {tuple(v.shape)} vs {tuple(w.shape)}")
            if (v < 0).any():
                fail(f"optim.v.{name}: negative second moment")
    if moments and len(moments) != 2 * len(weights):
        fail(f"{len(moments)} moment tensors for {len(weights)} weights")
    return weights


def check_transformers(weights, meta, torch):
    try:
        import transformers
        import yaml
    except ImportError:
        print("transformers or yaml not installed: BertForPreTraining load skipped")
        return
    cfg = yaml.safe_load(meta["config"])["model"]
    bc = transformers.BertConfig(
        vocab_size=cfg["vocab"], hidden_size=cfg["hidden"], num_hidden_layers=cfg["layers"],
        num_attention_heads=cfg["heads"], intermediate_size=cfg["ffn"],
        max_position_embeddings=cfg["max_pos"], type_vocab_size=cfg["type_vocab"],
        layer_norm_eps=float(cfg["ln_eps"]), hidden_act="gelu")
    model = transformers.BertForPreTraining(bc)
    missing, unexpected = model.load_state_dict(weights, strict=False)
    # The MLM decoder weight is tied to the word embeddings; position_ids is a buffer.
    missing = [k for k in missing
               if k not in ("cls.predictions.decoder.weight", "cls.predictions.decoder.bias")
               and not k.endswith("position_ids")]
    if missing:
        fail(f"BertForPreTraining parameters not in the checkpoint: {missing[:5]}")
    if unexpected:
        fail(f"checkpoint tensors BertForPreTraining does not know: {unexpected[:5]}")
    dec = model.cls.predictions.decoder.weight
    if not torch.equal(dec, weights["bert.embeddings.word_embeddings.weight"]):
        fail("decoder weight is not tied to the loaded word embeddings")
    model.eval()
    ids = torch.tensor([[2, 100, 200, 1, 300, 400, 1, 0]])
    seg = torch.tensor([[1, 1, 1, 1, 2, 2, 2, 0]])
    att = (ids != 0).long()
    with torch.no_grad():
        out = model(input_ids=ids, token_type_ids=seg, attention_mask=att)
    if not torch.isfinite(out.prediction_logits).all():
        fail("forward pass gives non-finite logits")
    print(f"BertForPreTraining ({cfg['layers']} layers x {cfg['hidden']}) loaded, forward ok")


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        sys.exit(2)
    try:
        import torch
        from safetensors import safe_open
        from safetensors.torch import load_file
    except ImportError:
        print("skipped: torch or safetensors not installed")
        sys.exit(0)
    path = newest_checkpoint(sys.argv[1])
    tensors = load_file(path)
    with safe_open(path, framework="pt") as f:
        meta = f.metadata() or {}
    weights = check_layout(tensors, meta, torch)
    print(f"{path}: step {meta['step']}, {len(weights)} weights, "
          f"{len(tensors) - len(weights)} moment tensors: layout ok")
    check_transformers(weights, meta, torch)
    print("check_checkpoint_torch: OK")


if __name__ == "__main__":
    main()
