#!/usr/bin/env python3
"""Reads a tl shard set with h5py and numpy and checks it against data/FORMAT.md.

    pip install h5py numpy
    python3 tests/data/check_h5py.py OUT_DIR

Exits non-zero with a message on the first mismatch. Not run by CI (h5py is
not a build dependency); it shows the format is readable without tl.
"""
import json
import os
import sys

import h5py
import numpy as np

PAD, SEP, CLS = 0, 1, 2


def fail(msg):
    sys.exit(f"check_h5py: {msg}")


def text(v):
    return v.decode() if isinstance(v, bytes) else str(v)


def check_rows(path, f, m):
    n, L = f["tokens"].shape
    tok = f["tokens"][:]
    seg = f["segments"][:].astype(np.int32)
    length = f["length"][:]
    label = f["label"][:]
    if tok.dtype != np.int32 or f["segments"].dtype != np.int8 or f["flow_id"].dtype != np.int64:
        fail(f"{path}: dtypes {tok.dtype} {f['segments'].dtype} {f['flow_id'].dtype}")
    if L != m["seq_len"] or tok.min() < 0 or tok.max() >= m["vocab_size"]:
        fail(f"{path}: seq_len {L} or token ids outside [0, vocab_size)")
    pos = np.arange(L)[None, :]
    pad = pos >= length[:, None]
    if not np.all(tok[pad] == PAD) or not np.all(seg[pad] == 0):
        fail(f"{path}: padding after length is not [PAD] with segment 0")
    if not np.all(tok[:, 0] == CLS):
        fail(f"{path}: a row does not start with [CLS]")
    if not (0 <= label.min() and label.max() < len(m["label_names"])):
        fail(f"{path}: label outside label_names")
    if m["task"] == "pretrain":
        # [CLS] A [SEP] B [SEP]: segment 1 through the first [SEP], then 2.
        first_sep = np.argmax(tok == SEP, axis=1)
        want = np.where(pos <= first_sep[:, None], 1, 2)
        want[pad] = 0
        if not np.array_equal(seg, want):
            fail(f"{path}: pre-training segments do not follow [CLS] A [SEP] B [SEP]")
        if not np.all(tok[np.arange(n), length - 1] == SEP):
            fail(f"{path}: a pair does not end with [SEP]")
    elif not np.array_equal(seg, (~pad).astype(np.int32)):
        fail(f"{path}: classification segments are not 1 on tokens, 0 on padding")
    return f["flow_id"][:], label


def main(out_dir):
    with open(os.path.join(out_dir, "manifest.json")) as fh:
        m = json.load(fh)
    if m["format_version"] != "tl-shards/1":
        fail(f"format_version {m['format_version']}")
    flow_split = {}
    for split, info in m["splits"].items():
        rows, per_label = 0, np.zeros(len(info["rows_per_label"]), dtype=np.int64)
        for sh in info["shards"]:
            path = os.path.join(out_dir, sh["file"])
            with h5py.File(path, "r") as f:
                a = f.attrs
                for key in ("tokenizer", "task", "split", "split_policy", "header_policy"):
                    want = split if key == "split" else m[key]
                    if text(a[key]) != want:
                        fail(f"{path}: attribute {key} = {a[key]!r}, manifest {want!r}")
                names = [text(x) for x in a["label_names"]]
                if names != m["label_names"] or int(a["seq_len"]) != m["seq_len"]:
                    fail(f"{path}: label_names or seq_len differ from the manifest")
                if len(f["tokens"]) != sh["rows"]:
                    fail(f"{path}: {len(f['tokens'])} rows, manifest says {sh['rows']}")
                flows, label = check_rows(path, f, m)
            rows += sh["rows"]
            per_label += np.bincount(label, minlength=len(per_label))[: len(per_label)]
            if m["split_policy"] != "packet":
                for fl in np.unique(flows).tolist():
                    if flow_split.setdefault(fl, split) != split:
                        fail(f"flow {fl} is in {flow_split[fl]} and {split}")
        if rows != info["rows"] or per_label.tolist() != info["rows_per_label"]:
            fail(f"{split}: rows {rows} / {per_label.tolist()} differ from the manifest")
        n_files = len(info["shards"])
        print(f"{split}: {rows} rows, per label {per_label.tolist()}, {n_files} file(s)")
    print(f"ok: {out_dir} ({m['task']}, {len(m['label_names'])} labels, seq_len {m['seq_len']})")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
