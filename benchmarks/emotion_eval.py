"""Emotion model on the hand-written test set (tests/data/emotion_test.jsonl): accuracy, macro-F1,
per-label precision/recall/F1 and the confusion matrix. The test set is never used for training.

    .venv/bin/python benchmarks/emotion_eval.py [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

TEST = Path(__file__).resolve().parents[1] / "tests" / "data" / "emotion_test.jsonl"


def evaluate(model=None, path: Path = TEST) -> dict:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    from emotional_engine.emotion import LABELS, EmotionModel

    model = model or EmotionModel.load()
    rows = [json.loads(line) for line in path.open() if line.strip()]
    t0 = time.perf_counter()
    scores = model.score([r["text"] for r in rows])
    dt = time.perf_counter() - t0
    y = [r["label"] for r in rows]
    pred = [s.emotion for s in scores]
    p, r, f, n = precision_recall_fscore_support(y, pred, labels=list(LABELS), zero_division=0)
    return {
        "n": len(rows),
        "accuracy": float(accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, labels=list(LABELS), average="macro")),
        "per_label": {
            k: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "n": int(n[i])}
            for i, k in enumerate(LABELS)
        },
        "confusion": confusion_matrix(y, pred, labels=list(LABELS)).tolist(),
        "valence_sign_agreement": _valence_sign(rows, scores),
        "seconds_per_sentence": dt / len(rows),
    }


def _valence_sign(rows, scores) -> float:
    pos, neg = {"joy", "trust"}, {"fear", "sadness", "disgust", "anger"}
    ok = [
        (s.valence > 0) if r["label"] in pos else (s.valence < 0)
        for r, s in zip(rows, scores)
        if r["label"] in pos | neg
    ]
    return float(np.mean(ok))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    from emotional_engine.emotion import LABELS

    res = evaluate()
    if a.json:
        print(json.dumps(res, indent=1))
        return
    print(f"test set: {TEST.name}, {res['n']} hand-written sentences")
    print(f"accuracy  {res['accuracy']:.3f}")
    print(f"macro-F1  {res['macro_f1']:.3f}")
    print(
        f"valence sign agreement (joy/trust > 0; fear/sadness/disgust/anger < 0)  {res['valence_sign_agreement']:.3f}"
    )
    print(f"scoring time per sentence (batched)  {1000 * res['seconds_per_sentence']:.1f} ms\n")
    print(f"{'label':<13}{'precision':>10}{'recall':>8}{'F1':>7}{'n':>5}")
    for k, v in res["per_label"].items():
        print(f"{k:<13}{v['precision']:>10.3f}{v['recall']:>8.3f}{v['f1']:>7.3f}{v['n']:>5}")
    print("\nconfusion (rows: true, columns: predicted)")
    short = [k[:5] for k in LABELS]
    print(" " * 13 + "".join(f"{s:>6}" for s in short))
    for k, row in zip(LABELS, res["confusion"]):
        print(f"{k:<13}" + "".join(f"{c:>6}" for c in row))


if __name__ == "__main__":
    main()
