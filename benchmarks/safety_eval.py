"""Safety classifier on the hand-written test set (tests/data/safety_test.jsonl): per-category
precision/recall/F1, macro-F1, severity accuracy, the confusion matrix, and per audience how the
policy's decisions on the predictions compare with its decisions on the true labels. The test set
is never used for training or tuning.

    .venv/bin/python benchmarks/safety_eval.py [--json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

TEST = Path(__file__).resolve().parents[1] / "tests" / "data" / "safety_test.jsonl"


def evaluate(model=None, path: Path = TEST) -> dict:
    from sklearn.metrics import confusion_matrix

    from emotional_engine.safety import AUDIENCES, CATEGORIES, SafetyModel, action_for
    from emotional_engine.safety.training import category_metrics

    model = model or SafetyModel.load()
    rows = [json.loads(line) for line in path.open() if line.strip()]
    texts = [r["text"] for r in rows]
    model.predict(texts[:4])  # warm-up
    t0 = time.perf_counter()
    q = model.class_probabilities(texts)
    preds = model.predict(texts)
    dt = (time.perf_counter() - t0) / 2  # two embedding passes above
    res = category_metrics(rows, q, model.safe_threshold)
    res["n"] = len(rows)
    res["hard_negatives_passed"] = _hard_negatives(rows, preds)
    res["confusion"] = confusion_matrix([r["category"] for r in rows], [p.category for p in preds],
                                        labels=list(CATEGORIES)).tolist()
    res["audiences"] = {a: _decisions(rows, preds, a, action_for) for a in AUDIENCES}
    res["ms_per_sentence"] = 1000 * dt / len(rows)
    res["ms_one_sentence"] = _one_at_a_time(texts[:40])
    return res


def _one_at_a_time(texts) -> dict:
    """Latency of checking one sentence per call, as the streaming path does."""
    from emotional_engine.safety import SafetyChecker

    checker = SafetyChecker.load()
    ms = []
    for t in texts:
        t0 = time.perf_counter()
        checker.check_sentences([t], "children")
        ms.append(1000 * (time.perf_counter() - t0))
    return {"median": float(np.median(ms)), "p95": float(np.percentile(ms, 95))}


def _hard_negatives(rows, preds) -> float:
    """Share of the safe sentences that are still allowed for children."""
    ok = [p.category == "safe" or p.category == "violence" and p.severity == 1
          for r, p in zip(rows, preds) if r["category"] == "safe"]
    return float(np.mean(ok))


def _decisions(rows, preds, audience, action_for) -> dict:
    """Block recall (true blocks the prediction also blocks), false blocks (allowed or flagged
    sentences the prediction blocks) and agreement of the three-way decision."""
    true = [action_for(r["category"], r["severity"], audience) for r in rows]
    got = [action_for(p.category, p.severity, audience) for p in preds]
    blocks = [g == "block" for t, g in zip(true, got) if t == "block"]
    not_blocks = [g == "block" for t, g in zip(true, got) if t != "block"]
    return {"true_blocks": len(blocks), "block_recall": float(np.mean(blocks)) if blocks else 1.0,
            "false_block_rate": float(np.mean(not_blocks)) if not_blocks else 0.0,
            "decision_agreement": float(np.mean([t == g for t, g in zip(true, got)]))}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    from emotional_engine.safety import CATEGORIES

    res = evaluate()
    if a.json:
        print(json.dumps(res, indent=1))
        return
    print(f"test set: {TEST.name}, {res['n']} hand-written sentences")
    print(f"category macro-F1  {res['macro_f1']:.3f}")
    print(f"category accuracy  {res['accuracy']:.3f}")
    print(f"severity accuracy (category right)  {res['severity_accuracy']:.3f}")
    print(f"safe sentences still allowed for children  {res['hard_negatives_passed']:.3f}")
    print(f"scoring time per sentence (batched)  {res['ms_per_sentence']:.1f} ms")
    one = res["ms_one_sentence"]
    print(f"one sentence per call (streaming)  {one['median']:.1f} ms median, {one['p95']:.1f} ms p95\n")
    print(f"{'category':<12}{'precision':>10}{'recall':>8}{'F1':>7}{'n':>5}")
    for k, v in res["per_category"].items():
        print(f"{k:<12}{v['precision']:>10.3f}{v['recall']:>8.3f}{v['f1']:>7.3f}{v['n']:>5}")
    print("\nconfusion (rows: true, columns: predicted)")
    print(" " * 12 + "".join(f"{k[:6]:>7}" for k in CATEGORIES))
    for k, row in zip(CATEGORIES, res["confusion"]):
        print(f"{k:<12}" + "".join(f"{c:>7}" for c in row))
    print(f"\n{'audience':<10}{'true blocks':>12}{'block recall':>14}{'false blocks':>14}{'agreement':>11}")
    for aud, d in res["audiences"].items():
        print(f"{aud:<10}{d['true_blocks']:>12}{d['block_recall']:>14.3f}{d['false_block_rate']:>14.3f}"
              f"{d['decision_agreement']:>11.3f}")


if __name__ == "__main__":
    main()
