#!/usr/bin/env python3
"""PyTorch twin of bench-train: the same pre-training step (BERT forward at the
masked positions only, MBM + SBP cross entropy, backward, clip at 1, AdamW) at the
same etbert-mini / etbert-base shapes, batch, sequence and masking rate.

usage: train_torch.py [--batch 8] [--seq 128] [--steps 3] [--only mini|base]

Threads: OMP_NUM_THREADS (default 2), as for bench-train. Prints the same table
columns as bench-train; the FLOP count is the same formula (bench/train.c).
"""
import argparse
import os
import time

import torch
import transformers

SIZES = {"mini": (256, 4, 4), "base": (768, 12, 12)}
VOCAB = 65541


def model_flops(C, L, F, V, B, T, M):
    layer = 2 * B * T * C * (4 * C + 2 * F) + 4.0 * B * T * T * C
    return 3 * (L * layer + 2.0 * M * C * (C + V) + 2.0 * B * C * (C + 2))


def sgemm_gflops(M, N, K):
    a, b = torch.rand(M, K), torch.rand(K, N)
    best = 1e30
    for r in range(6):
        t = time.perf_counter()
        a @ b
        t = time.perf_counter() - t
        if r > 0:
            best = min(best, t)
    return 2.0 * M * N * K / best / 1e9


def bench(name, B, T, steps):
    C, L, H = SIZES[name]
    cfg = transformers.BertConfig(vocab_size=VOCAB, hidden_size=C, num_hidden_layers=L,
                                  num_attention_heads=H, intermediate_size=4 * C,
                                  max_position_embeddings=512, type_vocab_size=3,
                                  hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                                  attn_implementation="eager")
    model = transformers.BertForPreTraining(cfg)
    model.train()
    def is_no_decay(n):
        return n.endswith("bias") or "LayerNorm" in n
    decay = [p for n, p in model.named_parameters() if not is_no_decay(n)]
    no_decay = [p for n, p in model.named_parameters() if is_no_decay(n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-4, eps=1e-6)

    # The synthetic batch: [CLS] first, 15% masked, segments 1 then 2.
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, VOCAB, (B, T), generator=g)
    ids[:, 0] = 2
    chosen = torch.rand(B, T, generator=g) < 0.15
    chosen[:, 0] = False
    rows = chosen.flatten().nonzero().squeeze(1)
    targets = ids.flatten()[rows].clone()
    ids.view(-1)[rows] = 4
    seg = torch.ones(B, T, dtype=torch.long)
    seg[:, T // 2:] = 2
    att = torch.ones(B, T, dtype=torch.long)
    labels = torch.arange(B) % 2
    M = rows.numel()

    total = 0.0
    for k in range(steps + 1):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        out = model.bert(input_ids=ids, token_type_ids=seg, attention_mask=att)
        hidden = out.last_hidden_state.reshape(B * T, C)[rows]
        mbm_logits = model.cls.predictions(hidden)
        sbp_logits = model.cls.seq_relationship(out.pooler_output)
        loss = (torch.nn.functional.cross_entropy(mbm_logits, targets)
                + torch.nn.functional.cross_entropy(sbp_logits, labels))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        if k > 0:
            total += time.perf_counter() - t0
    step_s = total / steps
    flops = model_flops(C, L, 4 * C, VOCAB, B, T, M)
    peak = sgemm_gflops(B * T, 4 * C, C)
    params = sum(p.numel() for p in model.parameters())
    print(f"(torch matmul peak at [{B*T}, {C}] x [{C}, {4*C}]: {peak:.1f} GFLOP/s)")
    print(f"| torch etbert-{name:6s} | {B} x {T} | {params} | {step_s:.3f} | {B*T/step_s:.0f} "
          f"| {flops/1e9:.1f} | {flops/step_s/1e9:.1f} | {100*flops/step_s/1e9/peak:.1f}% |",
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--only", choices=list(SIZES))
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; batch {a.batch} x "
          f"{a.seq}; {a.steps} timed steps after 1 warm-up")
    print("| shape | B x T | params | s/step | tokens/s | GFLOP/step | GFLOP/s | MFU |\n"
          "|---|---|---|---|---|---|---|---|")
    for name in SIZES:
        if a.only in (None, name):
            bench(name, a.batch, a.seq, a.steps)


if __name__ == "__main__":
    main()
