#!/usr/bin/env bash
# The main job on the captures the project ships (data/samples): build, turn the
# captures into shards, pre-train a tiny ET-BERT briefly, fine-tune it at packet
# and at flow level, and print the F1 tables (each beside the header-only
# shortcut baseline). About 10-15 minutes on 2 CPU cores.
#   bash scripts/demo.sh [OUT_DIR]      (default runs/demo)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/demo}
PRETRAIN_STEPS=${PRETRAIN_STEPS:-120}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$(nproc)}
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

step() { printf '\n== %s\n' "$*"; }

step "build"
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target tl-prep tl-pretrain tl-finetune tl-eval >/dev/null
BIN=build
rm -rf "$OUT"
mkdir -p "$OUT"

step "prepare shards from data/samples (split by flow, seed 42)"
$BIN/tl-prep --in data/samples --task packet --max-per-class 1000 --no-progress \
  --out "$OUT/shards/packet"
# Flow rows: the first 3 packets that carry payload, 64 bytes each (with ports
# zeroed, a TCP handshake is the same in every class and would fill the row).
$BIN/tl-prep --in data/samples --task flow --flow-packets 3 --packet-bytes 64 \
  --seq-len 192 --min-payload 1 --no-progress \
  --out "$OUT/shards/flow"
# Pre-training reads the same captures but leaves out every flow that the two
# classifiers are validated or tested on, so no test byte is pre-trained on.
$BIN/tl-prep --task pretrain --holdout-of "$OUT/shards/packet,$OUT/shards/flow" \
  --no-progress --out "$OUT/shards/pretrain"

step "pre-train etbert-tiny for $PRETRAIN_STEPS steps (masked burst + same-origin burst)"
$BIN/tl-pretrain --config configs/etbert-tiny.yaml \
  --set data.dir="$OUT/shards/pretrain" --set run.dir="$OUT/pretrain" \
  --set train.steps="$PRETRAIN_STEPS" --set data.batch_size=16 \
  --set train.eval_every="$PRETRAIN_STEPS" --set train.eval_batches=4 \
  --set ckpt.every="$PRETRAIN_STEPS" --set log.every=20

step "fine-tune at packet level"
$BIN/tl-finetune --config configs/demo-finetune-packet.yaml \
  --set data.dir="$OUT/shards/packet" --set run.dir="$OUT/packet" \
  --set model.init="$OUT/pretrain"

step "fine-tune at flow level"
# The flow set is small (about 1,300 training rows): more epochs than the packet set.
$BIN/tl-finetune --config configs/demo-finetune-flow.yaml \
  --set data.dir="$OUT/shards/flow" --set run.dir="$OUT/flow" \
  --set data.seq_len=192 --set train.epochs=10 \
  --set model.init="$OUT/pretrain"

step "results"
for level in packet flow; do
  echo "$level level: $OUT/$level/eval.json, confusion matrix $OUT/$level/confusion.svg"
done
