#!/usr/bin/env python3
"""Checks and filters tl shard sets for the F1 harness (needs h5py and numpy).

    shards_tool.py check DIR [DIR ...]
        No flow id in two splits of one set; with several sets made from the
        same file list (same order), none in the train split of one and the
        valid/test split of another either. Exit 1 on any overlap.

    shards_tool.py pretrain-filter [--train-only] PRETRAIN_DIR OUT_DIR CLS_DIR...
        Writes a copy of a pre-training set without the bursts of flows that are
        in a valid or test split of any of the classification sets: the flows
        that the caps left out stay (they are never scored). --train-only keeps
        only flows in a train split of one of the sets. Other-origin pairs get
        their B half again from a kept same-origin pair of another flow
        (tl-prep's own B may come from a dropped flow). Flow ids of separate
        tl-prep runs agree only when the runs read the same files in the same
        order with the same flow options; the tool checks that each shared flow
        id names the same capture file, and stops otherwise.

    shards_tool.py stats DIR
        Rows and flows per split and label.
"""
import json
import os
import sys

import h5py
import numpy as np

SPLITS = ("train", "valid", "test")
SEP, CLS = 1, 2


def manifest(d):
    with open(os.path.join(d, "manifest.json")) as f:
        return json.load(f)


def read_split(d, split, cols=("flow_id", "file_index", "label")):
    """Concatenated columns of one split, or None when it has no rows."""
    m = manifest(d)
    parts = {c: [] for c in cols}
    for sh in m["splits"].get(split, {}).get("shards", []):
        with h5py.File(os.path.join(d, sh["file"]), "r") as f:
            for c in cols:
                parts[c].append(f[c][:])
    if not parts[cols[0]]:
        return None
    return {c: np.concatenate(v) for c, v in parts.items()}


def flow_files(d):
    """{flow_id: source path} over all splits of a set; ids per split."""
    m = manifest(d)
    src = m["source_files"]
    files, ids = {}, {}
    for s in SPLITS:
        r = read_split(d, s, ("flow_id", "file_index"))
        ids[s] = set() if r is None else set(r["flow_id"].tolist())
        if r is not None:
            for fl, fi in zip(r["flow_id"].tolist(), r["file_index"].tolist()):
                files[fl] = src[fi]
    return files, ids


def agree(fa, fb, name_a, name_b):
    shared = set(fa) & set(fb)
    bad = [k for k in shared if fa[k] != fb[k]]
    if bad:
        k = bad[0]
        sys.exit(f"shards_tool: flow ids of {name_a} and {name_b} do not name the same "
                 f"capture ({len(bad)} of {len(shared)} shared ids; e.g. flow {k}: "
                 f"{fa[k]} vs {fb[k]}): the runs did not read the same files in order")
    return len(shared)


def cmd_check(dirs):
    sets = [(d,) + flow_files(d) for d in dirs]
    fail = 0
    for d, _, ids in sets:
        for i, a in enumerate(SPLITS):
            for b in SPLITS[i + 1:]:
                n = len(ids[a] & ids[b])
                print(f"{d}: flows in {a} and {b}: {n}")
                fail |= n > 0
        print(f"{d}: flows per split: " + ", ".join(f"{s} {len(ids[s])}" for s in SPLITS))
    for i, (da, fa, ia) in enumerate(sets):
        for db, fb, ib in sets[i + 1:]:
            agree(fa, fb, da, db)
            held_b = ib["valid"] | ib["test"]
            held_a = ia["valid"] | ia["test"]
            print(f"{da} train vs {db} valid+test: {len(ia['train'] & held_b)} shared; "
                  f"{db} train vs {da} valid+test: {len(ib['train'] & held_a)} shared "
                  f"(different sets may split differently; informational)")
    print("check: FAIL" if fail else "check: OK (no flow in two splits of one set)")
    return 1 if fail else 0


def halves(tok, length):
    """A and B halves of a [CLS] A [SEP] B [SEP] row."""
    row = tok[:length]
    sep = int(np.argmax(row == SEP))
    return row[1:sep], row[sep + 1:length - 1]


def pair_row(a, b, L):
    """Tokens, segments and length of [CLS] a [SEP] b [SEP], b cut to fit."""
    b = b[:max(0, L - 3 - len(a))]
    n = 3 + len(a) + len(b)
    tok = np.zeros(L, np.int32)
    seg = np.zeros(L, np.int8)
    tok[0], tok[1 + len(a)], tok[n - 1] = CLS, SEP, SEP
    tok[1:1 + len(a)] = a
    tok[2 + len(a):n - 1] = b
    seg[:2 + len(a)] = 1
    seg[2 + len(a):n] = 2
    return tok, seg, n


def filter_split(pre, split, keep, rng):
    cols = ("tokens", "segments", "length", "label", "flow_id", "file_index")
    r = read_split(pre, split, cols)
    if r is None:
        return None
    sel = np.isin(r["flow_id"], np.fromiter(keep, np.int64, len(keep)))
    r = {c: v[sel] for c, v in r.items()}
    n, L = r["tokens"].shape
    same = np.flatnonzero(r["label"] == 0)
    for i in np.flatnonzero(r["label"] == 1):
        # Why: tl-prep's B may come from a flow we dropped; take B from a kept one.
        for _ in range(50):
            j = same[rng.integers(len(same))]
            if r["flow_id"][j] != r["flow_id"][i]:
                break
        a, _ = halves(r["tokens"][i], r["length"][i])
        _, b = halves(r["tokens"][j], r["length"][j])
        r["tokens"][i], r["segments"][i], r["length"][i] = pair_row(a, b, L)
    order = rng.permutation(n)
    return {c: v[order] for c, v in r.items()}


def write_split(pre, out, split, r, m_out):
    m = manifest(pre)
    src_file = os.path.join(pre, m["splits"][split]["shards"][0]["file"])
    name = f"{split}-00000.h5"
    with h5py.File(src_file, "r") as src, h5py.File(os.path.join(out, name), "w") as dst:
        for k, v in src.attrs.items():
            dst.attrs[k] = v
        for c, v in r.items():
            chunk = (min(len(v), 1024),) + v.shape[1:]
            dst.create_dataset(c, data=v, chunks=chunk if len(v) else None,
                               shuffle=True, compression="gzip", compression_opts=1)
    n_same = int((r["label"] == 0).sum())
    m_out["splits"][split] = {"rows": int(len(r["label"])),
                              "flows": int(len(np.unique(r["flow_id"]))),
                              "rows_per_label": [n_same, int(len(r["label"])) - n_same],
                              "shards": [{"file": name, "rows": int(len(r["label"]))}]}


def cmd_pretrain_filter(pre, out, cls_dirs, train_only):
    fp, pre_ids = flow_files(pre)
    train, held = set(), set()
    for d in cls_dirs:
        fc, ids = flow_files(d)
        print(f"{d}: {agree(fp, fc, pre, d)} flow ids shared with {pre}, same files")
        train |= ids["train"]
        held |= ids["valid"] | ids["test"]
    keep = (train if train_only else set().union(*pre_ids.values())) - held
    os.makedirs(out, exist_ok=True)
    m = manifest(pre)
    m_out = dict(m)
    m_out["splits"] = {}
    rng = np.random.default_rng(42)
    pairs = [0, 0]
    for s in SPLITS:
        if s not in m["splits"] or not m["splits"][s].get("shards"):
            continue
        r = filter_split(pre, s, keep, rng)
        if r is None or len(r["label"]) == 0:
            continue
        write_split(pre, out, s, r, m_out)
        pairs[0] += m_out["splits"][s]["rows_per_label"][0]
        pairs[1] += m_out["splits"][s]["rows_per_label"][1]
        print(f"{out} {s}: {m_out['splits'][s]['rows']} rows of {m['splits'][s]['rows']}, "
              f"{m_out['splits'][s]['flows']} flows")
    if "pairs" in m_out:
        m_out["pairs"] = dict(m_out["pairs"], same_origin=pairs[0], other_origin=pairs[1])
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(m_out, f, indent=2)
    print(f"kept flows: {len(keep)} ({'train of' if train_only else 'all but those in'} "
          f"{len(cls_dirs)} sets, minus {len(held)} valid/test flows)")
    return 0


def cmd_stats(d):
    m = manifest(d)
    for s in SPLITS:
        r = read_split(d, s)
        if r is None:
            continue
        counts = np.bincount(r["label"], minlength=len(m["label_names"]))
        flows = [len(np.unique(r["flow_id"][r["label"] == c])) for c in range(len(counts))]
        print(f"{s}: " + " ".join(f"{m['label_names'][c]}={counts[c]}/{flows[c]}f"
                                   for c in range(len(counts))))
    return 0


def main(argv):
    if len(argv) >= 2 and argv[0] == "check":
        return cmd_check(argv[1:])
    if len(argv) >= 2 and argv[0] == "pretrain-filter":
        train_only = argv[1] == "--train-only"
        rest = argv[2:] if train_only else argv[1:]
        if len(rest) >= 3:
            return cmd_pretrain_filter(rest[0], rest[1], rest[2:], train_only)
    if len(argv) == 2 and argv[0] == "stats":
        return cmd_stats(argv[1])
    sys.exit(__doc__)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
