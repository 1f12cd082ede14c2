"""Train the prompt guard's model tier from the tune corpora.

    pip install '.[train]'            # scikit-learn, for training only
    python -m bench.efficacy.train [--out extproc/guard/model/injection.json]

Reads only ``split == "tune"`` records of ``bench/efficacy/corpora`` (never
the held-out ones), featurizes them with ``extproc.guard.model.features``
(exactly what inference computes), fits an L2 logistic regression with
balanced class weights and picks the decision threshold by 5-fold
cross-validation (grouped: an attack family and its near duplicates never
straddle folds), as the lowest probability at which the deployed guard
(rules or model) keeps its out-of-fold false-positive rate on benign tune
prompts within ``--max-fp`` (2 %, the issue's bound).
Weights are quantized to 16-bit integers. Deterministic: the same corpora
give the same file.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import math
import sys
from array import array
from pathlib import Path
from typing import Any

from extproc.guard.model import classifier, features

CORPORA = Path(__file__).with_name("corpora")
DIM = 1 << 16


def tune_records() -> list[dict[str, Any]]:
    out = []
    for path in sorted(CORPORA.glob("*.jsonl")):
        if path.stem.startswith("pii"):
            continue
        for line in path.read_text(encoding="utf-8").split("\n"):
            if line:
                record = json.loads(line)
                if record["split"] == "tune":
                    record["corpus"] = path.stem
                    out.append(record)
    return out


def clusters(records: list[dict[str, Any]]) -> list[str]:
    """A group per record for cross-validation: an attack's source family,
    merged with every near duplicate (half its 8-word shingles shared), so
    no fold tests on a variant of what it trained on."""
    import re
    from collections import Counter, defaultdict

    def shingles(text: str) -> set[str]:
        words = re.sub(r"\W+", " ", text.lower()).split()
        return {" ".join(words[i : i + 8]) for i in range(max(1, len(words) - 7))}

    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[str, int] = {}
    for i, record in enumerate(records):
        if record["label"] == 0:
            # A benign "family" is a whole category (coding, role-play...):
            # held-out prompts come from other templates of the same
            # categories, so benign prompts group by near duplicates only.
            continue
        family = f"{record['corpus']}:{record['family']}"
        if family in first:
            parent[find(i)] = find(first[family])
        first.setdefault(family, i)
    sets = [shingles(record["text"]) for record in records]
    index: dict[str, list[int]] = defaultdict(list)
    for i, items in enumerate(sets):
        for item in items:
            index[item].append(i)
    for i, items in enumerate(sets):
        shared = Counter(j for item in items for j in index[item] if j != i and len(index[item]) < 200)
        for j, count in shared.items():
            if count > 0.5 * min(len(items), len(sets[j])):
                parent[find(i)] = find(j)
    return [str(find(i)) for i in range(len(records))]


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    from scipy.sparse import csr_matrix
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GroupKFold

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=classifier.WEIGHTS_PATH)
    parser.add_argument("--c", type=float, default=16.0, help="inverse L2 regularization strength")
    parser.add_argument("--heads", type=int, default=0, help="also train on the first N chars of long attacks")
    parser.add_argument("--oof", type=Path, help="write out-of-fold probabilities (id -> p) here")
    parser.add_argument(
        "--max-fp", type=float, default=0.02, help="out-of-fold benign FP rate (rules or model) to stay within"
    )
    args = parser.parse_args(argv)

    records = tune_records()
    if args.heads:
        # Short character set-ups are jailbreaks too: teach the model the
        # opening of each long attack as an example of its own.
        heads = []
        for record in records:
            text = record["text"]
            if record["label"] == 1 and len(text) > 2 * args.heads:
                cut = text.rfind(" ", 0, args.heads)
                heads.append({**record, "id": record["id"] + ":head", "text": text[: cut if cut > 0 else args.heads]})
        records += heads
    rows, cols = [], []
    for r, record in enumerate(records):
        idx = features.indexes(record["text"], DIM)
        rows.extend([r] * len(idx))
        cols.extend(idx)
    values = np.concatenate(
        [np.full(n, 1.0 / math.sqrt(n)) for n in np.bincount(np.asarray(rows), minlength=len(records)) if n]
    )
    x = csr_matrix((values, (np.asarray(rows), np.asarray(cols))), shape=(len(records), DIM))
    y = np.asarray([record["label"] for record in records])
    groups = np.asarray(clusters(records))
    print(f"{len(set(groups))} cross-validation groups")

    def model() -> LogisticRegression:
        return LogisticRegression(C=args.c, class_weight="balanced", solver="liblinear", max_iter=1000)

    oof = np.zeros(len(records))
    for train, test in GroupKFold(n_splits=5).split(x, y, groups):
        oof[test] = model().fit(x[train], y[train]).predict_proba(x[test])[:, 1]
    if args.oof:
        args.oof.write_text(json.dumps({record["id"]: float(p) for record, p in zip(records, oof, strict=True)}))
    # The operating point: the lowest threshold at which the guard as
    # deployed (rules at the 0.5 threshold, or the model) keeps its
    # out-of-fold false-positive rate on benign tune prompts within
    # --max-fp. The rules' own false positives count against the budget.
    from extproc.guard.injection import InjectionDetector

    detector = InjectionDetector()
    ruled = np.asarray([detector.scan(record["text"]).score >= 0.5 for record in records])
    benign = y == 0
    threshold = 0.99
    for candidate in np.arange(0.99, 0.049, -0.01):
        if ((oof >= candidate) | ruled)[benign].mean() > args.max_fp:
            break
        threshold = float(round(candidate, 2))
    recall = float((oof[y == 1] >= threshold).mean())
    fp = float((oof[y == 0] >= threshold).mean())
    print(f"tune records: {len(records)} ({int(y.sum())} attacks); {x.nnz} features")
    for t in (0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7):
        hit, false = (oof[y == 1] >= t).mean(), (oof[y == 0] >= t).mean()
        print(f"  CV at {t:.2f}: recall {100 * hit:.1f} %, FP {100 * false:.2f} %")
    print(f"5-fold grouped CV at threshold {threshold:.3f}: recall {100 * recall:.1f} %, benign FP {100 * fp:.2f} %")

    final = model().fit(x, y)
    coef = final.coef_[0]
    scale = float(np.abs(coef).max() / 32767) or 1.0
    quantized = array("h", np.round(coef / scale).astype(np.int16).tolist())
    if sys.byteorder != "little":  # pragma: no cover
        quantized.byteswap()
    raw = quantized.tobytes()
    digest = hashlib.sha256(raw).hexdigest()[:12]
    out = {
        "format": classifier.FORMAT,
        "features": features.FEATURES_VERSION,
        "version": digest,
        "dim": DIM,
        "bias": float(final.intercept_[0]),
        "scale": scale,
        "threshold": round(threshold, 4),
        "trained_on": {"records": len(records), "attacks": int(y.sum()), "c": args.c},
        "cv": {"recall": round(recall, 4), "fp_rate": round(fp, 4)},
        "weights": base64.b64encode(raw).decode(),
    }
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
