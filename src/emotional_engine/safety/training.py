"""Train the safety head on data/train.jsonl and save data/head.npz.

    python -m emotional_engine.safety.training [--compare-mlp]

Features are the emotion model's (MiniLM embedding + VADER, `emotion.model.features`); the head is
a multinomial logistic regression over `labels.CLASSES` (safe, and each category at severity 1 and
2). Its C, class weighting and the `safe` threshold of the decision rule (`model.decide`) are
chosen by stratified 5-fold cross-validation, recall first, as a safety check should be: for each
(C, class weighting) the threshold is the lowest that finds at least UNSAFE_RECALL_TARGET of the
unsafe sentences (any unsafe category counts), and of those settings the one with the best
category macro-F1 wins. The same folds give the reported held-out metrics. The head is then
refitted on the whole file. `--compare-mlp` scores a small MLP on the same folds (the
logistic head is kept unless the MLP measurably beats it). tests/data/safety_test.jsonl is never
read here.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from emotional_engine.emotion.model import features

from .labels import CATEGORIES, CLASSES, class_of
from .model import HEAD_PATH, SAFE_THRESHOLD, decide

TRAIN_PATH = Path(__file__).parent / "data" / "train.jsonl"
VADER_WEIGHT = 1.0
CS = (8.0, 32.0, 128.0)
CLASS_WEIGHTS = ("balanced", None)
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)  # p(safe) needed to call a sentence safe
UNSAFE_RECALL_TARGET = 0.9


def read_rows(path: Path) -> list[dict]:
    rows = [json.loads(line) for line in Path(path).open() if line.strip()]
    for r in rows:
        class_of(r["category"], r["severity"])  # validates the label
    return rows


def category_metrics(rows: list[dict], q: np.ndarray, threshold: float = SAFE_THRESHOLD) -> dict:
    """Category macro-F1 and per-category precision/recall, plus severity accuracy on the sentences
    whose unsafe category was found, from (N, 15) class probabilities."""
    from sklearn.metrics import f1_score, precision_recall_fscore_support

    preds = [decide(row, threshold) for row in q]
    y = [r["category"] for r in rows]
    yhat = [p.category for p in preds]
    p, r, f, n = precision_recall_fscore_support(y, yhat, labels=list(CATEGORIES), zero_division=0)
    unsafe = [pr.category != "safe" for r, pr in zip(rows, preds) if r["category"] != "safe"]
    hit = [
        (r["severity"], pr.severity)
        for r, pr in zip(rows, preds)
        if r["category"] != "safe" and pr.category == r["category"]
    ]
    return {
        "macro_f1": float(f1_score(y, yhat, labels=list(CATEGORIES), average="macro", zero_division=0)),
        "accuracy": float(np.mean([a == b for a, b in zip(y, yhat)])),
        "severity_accuracy": float(np.mean([a == b for a, b in hit])) if hit else 0.0,
        "unsafe_recall": float(np.mean(unsafe)) if unsafe else 1.0,  # unsafe called unsafe, any category
        "per_category": {
            k: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "n": int(n[i])}
            for i, k in enumerate(CATEGORIES)
        },
    }


def _out_of_fold(make, x: np.ndarray, y: np.ndarray, folds) -> np.ndarray:
    """(N, 15) out-of-fold class probabilities (classes absent from a fold's training part get 0)."""
    q = np.zeros((len(y), len(CLASSES)))
    for tr, te in folds:
        m = make().fit(x[tr], y[tr])
        q[np.ix_(te, m.classes_)] = m.predict_proba(x[te])
    return q


def train(data: Path = TRAIN_PATH, out: Path = HEAD_PATH, seed: int = 0, compare_mlp: bool = False) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    from emotional_engine.emotion import EmotionModel

    rows = read_rows(data)
    y = np.array([CLASSES.index(class_of(r["category"], r["severity"])) for r in rows])
    emotion = EmotionModel.load()  # the same MiniLM and VADER the checker uses
    x = features(emotion.embedder, emotion.vader, [r["text"] for r in rows], VADER_WEIGHT)  # (N, 388)
    folds = list(StratifiedKFold(5, shuffle=True, random_state=seed).split(x, y))

    def logistic(c: float, weight: str | None):
        return lambda: LogisticRegression(C=c, max_iter=5000, class_weight=weight)

    cv = {}
    for c in CS:
        for weight in CLASS_WEIGHTS:
            q = _out_of_fold(logistic(c, weight), x, y, folds)
            for th in THRESHOLDS:
                cv[(c, weight, th)] = category_metrics(rows, q, th)
    # per (C, weight): the lowest threshold reaching the recall target (else the highest threshold)
    candidates = []
    for c in CS:
        for weight in CLASS_WEIGHTS:
            ok = [th for th in THRESHOLDS if cv[(c, weight, th)]["unsafe_recall"] >= UNSAFE_RECALL_TARGET]
            candidates.append((c, weight, ok[0] if ok else THRESHOLDS[-1]))
    best = max(candidates, key=lambda k: (cv[k]["unsafe_recall"] >= UNSAFE_RECALL_TARGET, cv[k]["macro_f1"]))
    c, weight, threshold = best
    report = {
        "n": len(rows),
        "counts": {k: int((y == i).sum()) for i, k in enumerate(CLASSES)},
        "cv_macro_f1_and_unsafe_recall": {
            f"C={k[0]:g} class_weight={k[1]} safe_threshold={k[2]}": (
                round(v["macro_f1"], 4),
                round(v["unsafe_recall"], 4),
            )
            for k, v in cv.items()
        },
        "chosen": {"C": c, "class_weight": weight, "safe_threshold": threshold},
        "cv": cv[best],
    }
    if compare_mlp:
        from sklearn.neural_network import MLPClassifier

        def mlp():
            return MLPClassifier(hidden_layer_sizes=(64,), alpha=1e-3, max_iter=2000, random_state=seed)

        report["cv_mlp"] = category_metrics(rows, _out_of_fold(mlp, x, y, folds), threshold)
    final = logistic(c, weight)().fit(x, y)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        coef=final.coef_.astype(np.float32),
        intercept=final.intercept_.astype(np.float32),
        classes=np.array(CLASSES),
        vader_weight=np.float32(VADER_WEIGHT),
        C=np.float32(c),
        safe_threshold=np.float32(threshold),
    )
    print(json.dumps(report, indent=1))
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m emotional_engine.safety.training")
    ap.add_argument("--data", type=Path, default=TRAIN_PATH)
    ap.add_argument("--out", type=Path, default=HEAD_PATH)
    ap.add_argument("--compare-mlp", action="store_true", help="also score a small MLP head on the same folds")
    a = ap.parse_args(argv)
    train(a.data, a.out, compare_mlp=a.compare_mlp)


if __name__ == "__main__":
    main()
