#!/usr/bin/env bash
# bench/f1/run.sh: one F1 measurement, captures -> shards -> (pre-training) ->
# fine-tuning -> evaluation, appended as a row to a results file.
#
#   bench/f1/run.sh DATASET_DIR NAME [--level packet|flow] [--split flow|file|packet]
#                   [--labels CSV] [--init CKPT_OR_RUN | --pretrain STEPS]
#                   [--config FT.yaml] [--pretrain-config PT.yaml]
#                   [--max-per-class N] [--header-policy anonymous|keep|compat]
#                   [--work DIR] [--results FILE]
#                   [--set KEY=VALUE ...]
#
# DATASET_DIR: one folder per class of pcap/pcapng files (folders starting with '_'
# are skipped), or any folder when --labels names a CSV/TSV of path,label (a header
# naming path/file and label/class columns, or none; relative paths are taken from
# DATASET_DIR).
# NAME: a dataset name; bench/f1/configs/NAME.conf (if present) sets its defaults
# (prep options, level, paper F1). See bench/f1/README.md.
# Pre-training: --init uses a given tl-pretrain checkpoint or run folder;
# --pretrain STEPS pre-trains on this dataset's own captures, restricted to flows
# that are in the train split (bench/f1/shards_tool.py pretrain-filter; needs h5py);
# neither: random init (the no-pre-training baseline).
# Environment: TL_BUILD (default build), PYTHON (default python3), OMP_* (OMP_WAIT_POLICY
# defaults to passive).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
build=${TL_BUILD:-$root/build}
py=${PYTHON:-python3}
# Why: on a busy machine libgomp's spinning threads burn the time slices the work needs
# (bench/RESULTS.md, "## train"); passive waits cost little on a quiet one.
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive}

die() { echo "run.sh: $*" >&2; exit 2; }
[ $# -ge 2 ] || die "usage: run.sh DATASET_DIR NAME [options] (see the head of this file)"
data=$1 name=$2
shift 2

# Defaults; NAME.conf may change them; flags win over both.
LEVEL=packet SPLIT=flow LABELS="" INIT="" PRETRAIN_STEPS=0 MAX_PER_CLASS="" FT_CONFIG=""
PT_CONFIG=$root/configs/etbert-tiny.yaml PREP_ARGS=() PAPER_F1_PACKET="" PAPER_F1_FLOW=""
SETS=()
conf=$here/configs/$name.conf
# shellcheck disable=SC1090
[ -f "$conf" ] && source "$conf"
while [ $# -gt 0 ]; do
  case $1 in
    --level) LEVEL=$2; shift 2 ;;
    --split) SPLIT=$2; shift 2 ;;
    --labels) LABELS=$2; shift 2 ;;
    --init) INIT=$2; shift 2 ;;
    --pretrain) PRETRAIN_STEPS=$2; shift 2 ;;
    --config) FT_CONFIG=$2; shift 2 ;;
    --pretrain-config) PT_CONFIG=$2; shift 2 ;;
    --max-per-class) MAX_PER_CLASS=$2; shift 2 ;;
    --header-policy) PREP_ARGS+=(--header-policy "$2"); shift 2 ;;
    --work) WORK=$2; shift 2 ;;
    --results) RESULTS=$2; shift 2 ;;
    --set) SETS+=(--set "$2"); shift 2 ;;
    *) die "unknown option '$1'" ;;
  esac
done
case $LEVEL in packet | flow) ;; *) die "--level: expected packet or flow, not '$LEVEL'" ;; esac
case $SPLIT in flow | file | packet) ;; *) die "--split: expected flow, file or packet" ;; esac
[ -d "$data" ] || die "$data: not a folder"
[ -n "$INIT" ] && [ "$PRETRAIN_STEPS" != 0 ] && die "--init and --pretrain exclude each other"
for t in tl-prep tl-pretrain tl-finetune tl-eval; do
  [ -x "$build/$t" ] || die "$build/$t missing: build it (or set TL_BUILD)"
done

# Level defaults: the published shapes (REFERENCE.md) and caps.
if [ "$LEVEL" = packet ]; then
  level_args=(--seq-len 128 --packet-bytes 128)
  : "${MAX_PER_CLASS:=5000}"
  : "${FT_CONFIG:=$root/configs/finetune-packet.yaml}"
  paper=$PAPER_F1_PACKET
else
  level_args=(--flow-packets 5 --packet-bytes 64 --seq-len 512)
  : "${MAX_PER_CLASS:=500}"
  : "${FT_CONFIG:=$root/configs/finetune-flow.yaml}"
  paper=$PAPER_F1_FLOW
fi
tag=$name-$LEVEL-$SPLIT
: "${WORK:=$root/runs/f1/$name}"
: "${RESULTS:=$here/results.tsv}"
mkdir -p "$WORK"
log=$WORK/$tag.log
t0=$(date +%s)
say() { echo "[f1 $(date -u +%H:%M:%S)] $*" | tee -a "$log"; }
# Logs the command (a long --in list as a count), runs it into the log, stops on failure.
run() {
  local shown="$*"
  [ ${#shown} -gt 600 ] && shown="${shown:0:300} ... (${#shown} characters)"
  say "\$ $shown"
  "$@" >>"$log" 2>&1 || { tail -n 20 "$log" >&2; die "failed: $1"; }
}

# Step 1: one file list (path<TAB>label) in a fixed order, so that the pre-training
# pass reads the same files in the same order: flow ids then agree across sets.
list=$WORK/files.tsv
if [ -n "$LABELS" ]; then
  awk -v dir="$(cd "$data" && pwd)" '
    BEGIN { FS = (index("'"$(head -n 1 "$LABELS")"'", "\t") ? "\t" : ","); p = 1; l = 2 }
    NR == 1 { for (i = 1; i <= NF; i++) { if ($i == "path" || $i == "file") p = i
                                          if ($i == "label" || $i == "class") l = i }
              if (p != 1 || l != 2 || $1 == "path" || $1 == "file") next }
    /^#/ || NF < 2 { next }
    { f = $p; if (substr(f, 1, 1) != "/") f = dir "/" f; print f "\t" $l }' "$LABELS" >"$list"
else
  find "$data" -mindepth 2 -type f ! -path "$data/_*" ! -name '.*' | LC_ALL=C sort |
    awk -v d="$data" '{ rel = substr($0, length(d) + 2); split(rel, a, "/")
                        print $0 "\t" a[1] }' >"$list"
fi
[ -s "$list" ] || die "no capture files found under $data"
say "$(wc -l <"$list") files, $(cut -f2 "$list" | sort -u | wc -l) labels: $list"

# Step 2: classification shards.
shards=$WORK/shards/$LEVEL-$SPLIT
run "$build/tl-prep" --task "$LEVEL" --labels "$list" --out "$shards" --split "$SPLIT" \
  --max-per-class "$MAX_PER_CLASS" "${level_args[@]}" "${PREP_ARGS[@]}" --no-progress

# Step 3: pre-training on train-split flows only, or a given checkpoint, or none.
init_desc=none
if [ "$PRETRAIN_STEPS" != 0 ]; then
  mapfile -t files < <(cut -f1 "$list")
  ins=()
  for f in "${files[@]}"; do ins+=(--in "$f"); done
  run "$build/tl-prep" --task pretrain "${ins[@]}" --out "$WORK/shards/pretrain-all" \
    --packet-bytes 64 "${PREP_ARGS[@]}" --no-progress
  run "$py" "$here/shards_tool.py" pretrain-filter "$WORK/shards/pretrain-all" \
    "$WORK/shards/pretrain-$LEVEL-$SPLIT" "$shards"
  INIT=$WORK/runs/pretrain-$LEVEL-$SPLIT
  rm -rf "$INIT" # why: a rerun starts afresh (tl-pretrain refuses a folder with checkpoints)
  run "$build/tl-pretrain" --config "$PT_CONFIG" \
    --set data.dir="$WORK/shards/pretrain-$LEVEL-$SPLIT" \
    --set run.dir="$INIT" --set train.steps="$PRETRAIN_STEPS" --set train.eval_every=0
  init_desc="pretrain $PRETRAIN_STEPS steps ($(basename "$PT_CONFIG"), no valid/test flow)"
elif [ -n "$INIT" ]; then
  init_desc="given: $INIT"
fi

# Step 4: fine-tune (best epoch by validation macro F1), then score the test split.
seq=$(grep -o '"seq_len":[[:space:]]*[0-9]*' "$shards/manifest.json" | head -n 1 |
  grep -o '[0-9]*$')
[ -n "$seq" ] || die "$shards/manifest.json: no seq_len"
ft=$WORK/runs/finetune-$tag
rm -rf "$ft" # why: a rerun starts afresh (tl-finetune refuses a folder with checkpoints)
run "$build/tl-finetune" --config "$FT_CONFIG" --set model.init="$INIT" \
  --set data.dir="$shards" --set data.seq_len="$seq" --set run.dir="$ft" "${SETS[@]}"
run "$build/tl-eval" --checkpoint "$ft/best.safetensors" --data "$shards" --split test \
  --out "$ft/eval-test"

# Step 5: one row in the results file.
read -r f1 sc acc n_test < <("$py" - "$ft/eval-test/eval.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
sc = d.get("shortcut") or {}
fmt = lambda v: "-" if v is None else f"{v:.4f}"
print(fmt(d["macro_f1"]), fmt(sc.get("macro_f1")), fmt(d["accuracy"]), d.get("n", "-"))
PY
)
wall=$(( $(date +%s) - t0 ))
cpu=$(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -n 1)
machine="$(nproc) cores $cpu, load $(cut -d' ' -f1 /proc/loadavg)"
cols=(date dataset level split init macro_f1 shortcut_f1 accuracy test_rows paper_f1 wall_s
      machine max_per_class)
[ -f "$RESULTS" ] || (IFS=$'\t'; echo "${cols[*]}") >"$RESULTS"
row=("$(date -u +%FT%TZ)" "$name" "$LEVEL" "$SPLIT" "$init_desc" "$f1" "$sc" "$acc" "$n_test"
     "${paper:--}" "$wall" "$machine" "$MAX_PER_CLASS")
(IFS=$'\t'; echo "${row[*]}") >>"$RESULTS"
say "macro F1 $f1 (header-only shortcut $sc; paper ${paper:--}); row appended to $RESULTS"
