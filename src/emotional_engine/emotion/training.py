"""Train the emotion head on data/train.jsonl and save data/head.npz.

    python -m emotional_engine.emotion.training

The template sentences are trivially separable, so they say nothing about generalisation. The
regularisation C is therefore picked by 5-fold cross-validation over the *model-written* sentences
only: each fold trains on all template sentences plus 4/5 of the model-written ones and scores
macro-F1 on the remaining fifth. The same folds give the held-out metrics reported (out-of-fold
predictions on the model-written sentences). The head is then refitted on the whole file and saved.
The hand-written test set is never read here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .labels import LABELS
from .model import HEAD_PATH, features, load_embedder, load_vader

TRAIN_PATH = Path(__file__).parent / "data" / "train.jsonl"
VADER_WEIGHT = 1.0
CS = (0.05, 0.15, 0.5, 2.0, 8.0)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).open() if line.strip()]


def train(data: Path = TRAIN_PATH, out: Path = HEAD_PATH, seed: int = 0) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, classification_report, f1_score
    from sklearn.model_selection import StratifiedKFold

    rows = read_jsonl(data)
    texts = [r["text"] for r in rows]
    y = np.array([LABELS.index(r["label"]) for r in rows])
    lm = np.array([r.get("source") == "lm" for r in rows])
    x = features(load_embedder(), load_vader(), texts, VADER_WEIGHT)

    def make(c: float):
        return LogisticRegression(C=c, max_iter=3000, class_weight="balanced")

    lm_idx, tpl_idx = np.flatnonzero(lm), np.flatnonzero(~lm)
    if len(lm_idx) < 50:  # no model-written sentences (the teacher head): plain stratified folds over all
        lm_idx, tpl_idx = np.arange(len(rows)), np.array([], dtype=int)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(lm_idx, y[lm_idx]))
    cv, oof = {}, {}
    for c in CS:
        pred = np.empty(len(lm_idx), dtype=int)
        for tr, te in folds:
            fit_idx = np.concatenate([tpl_idx, lm_idx[tr]])
            pred[te] = make(c).fit(x[fit_idx], y[fit_idx]).predict(x[lm_idx[te]])
        oof[c] = pred
        cv[c] = float(f1_score(y[lm_idx], pred, average="macro"))
    best = max(cv, key=cv.get)
    yte, pred = y[lm_idx], oof[best]
    report = {
        "n": len(rows),
        "counts": {k: int((y == i).sum()) for i, k in enumerate(LABELS)},
        "counts_model_written": {k: int((y[lm_idx] == i).sum()) for i, k in enumerate(LABELS)},
        "cv_macro_f1_on_model_written": cv,
        "C": best,
        "heldout_accuracy": float(accuracy_score(yte, pred)),
        "heldout_macro_f1": float(f1_score(yte, pred, average="macro")),
    }
    print("out-of-fold on model-written sentences, C =", best)
    print(classification_report(yte, pred, labels=list(range(len(LABELS))), target_names=list(LABELS), digits=3))
    final = make(best).fit(x, y)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        coef=final.coef_.astype(np.float32),
        intercept=final.intercept_.astype(np.float32),
        labels=np.array(LABELS),
        vader_weight=np.float32(VADER_WEIGHT),
        C=np.float32(best),
    )
    print(json.dumps(report, indent=1))
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m emotional_engine.emotion.training")
    ap.add_argument("--data", type=Path, default=TRAIN_PATH)
    ap.add_argument("--out", type=Path, default=HEAD_PATH)
    a = ap.parse_args(argv)
    train(a.data, a.out)


if __name__ == "__main__":
    main()
