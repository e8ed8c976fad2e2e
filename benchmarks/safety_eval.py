"""Safety classifier on the hand-written test set (tests/data/safety_test.jsonl): per-category
precision/recall/F1, macro-F1, severity accuracy, the confusion matrix, and per audience how the
policy's decisions on the predictions compare with its decisions on the true labels; the same for a
keyword-list baseline (the lists below, written for this comparison only), and the check's time
against MiniLM's embedding alone, in the same run. The test set is never used for training or
tuning.

    .venv/bin/python benchmarks/safety_eval.py [--json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

TEST = Path(__file__).resolve().parents[1] / "tests" / "data" / "safety_test.jsonl"

# baseline only: what a word list alone does (first matching category wins, in this order)
KEYWORDS = {
    "hate": [
        "vermin",
        "subhuman",
        "exterminat",
        "their kind",
        "your kind",
        "go back where",
        "those people",
        "infestation",
        "cockroach",
        "lice",
        "race is",
        "inferior",
    ],
    "sexual": ["naked", "sex", "kiss", "lover", "undress", "breasts", "thighs", "moan", "mistress", "orgy"],
    "self_harm": [
        "suicide",
        "kill himself",
        "kill herself",
        "take her own life",
        "end it all",
        "cut herself",
        "cut himself",
        "hurting himself",
        "hurt herself",
        "scars on",
        "hanged himself",
        "overdose",
    ],
    "gore": ["blood", "guts", "entrails", "intestines", "severed", "corpse", "flesh", "skull", "bone", "maggot"],
    "substances": [
        "drunk",
        "beer",
        "wine",
        "whiskey",
        "vodka",
        "rum",
        "heroin",
        "cocaine",
        "meth",
        "crack",
        "pills",
        "high on",
        "joint",
        "cigarette",
        "smoke",
        "needle",
    ],
    "profanity": ["fuck", "shit", "damn", "hell", "bastard", "bitch", "crap", "bloody", "piss", "ass"],
    "violence": [
        "kill",
        "stab",
        "shoot",
        "shot",
        "punch",
        "kick",
        "beat",
        "murder",
        "strangle",
        "fight",
        "attack",
        "gun",
        "knife",
        "sword",
        "chase",
        "slap",
        "shove",
        "hit",
    ],
}
STRONG = [
    "kill",
    "murder",
    "stab",
    "shot",
    "shoot",
    "fuck",
    "shit",
    "heroin",
    "cocaine",
    "meth",
    "crack",
    "naked",
    "sex",
    "severed",
    "entrails",
    "intestines",
    "exterminat",
    "vermin",
    "suicide",
]


def keyword_baseline(text: str) -> tuple[str, int]:
    low = text.lower()
    for category, words in KEYWORDS.items():
        if any(w in low for w in words):
            return category, 2 if any(w in low for w in STRONG) else 1
    return "safe", 0


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
    res["confusion"] = confusion_matrix(
        [r["category"] for r in rows], [p.category for p in preds], labels=list(CATEGORIES)
    ).tolist()
    res["audiences"] = {a: _decisions(rows, preds, a, action_for) for a in AUDIENCES}
    res["ms_per_sentence"] = 1000 * dt / len(rows)
    res["ms_one_sentence"] = _one_at_a_time(texts[:40])
    t0 = time.perf_counter()
    model.embedder.encode(texts, batch_size=64, normalize_embeddings=True, show_progress_bar=False)
    res["ms_per_sentence_embedding_only"] = 1000 * (time.perf_counter() - t0) / len(rows)
    res["keyword_baseline"] = _baseline(rows, action_for, AUDIENCES)
    return res


def _baseline(rows, action_for, audiences) -> dict:
    """The same metrics for KEYWORDS."""
    from sklearn.metrics import f1_score

    from emotional_engine.safety import CATEGORIES
    from emotional_engine.safety.model import Prediction

    preds = [Prediction(*keyword_baseline(r["text"]), 1.0, {}) for r in rows]
    return {
        "macro_f1": float(
            f1_score(
                [r["category"] for r in rows],
                [p.category for p in preds],
                labels=list(CATEGORIES),
                average="macro",
                zero_division=0,
            )
        ),
        "hard_negatives_passed": _hard_negatives(rows, preds),
        "audiences": {a: _decisions(rows, preds, a, action_for) for a in audiences},
    }


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
    ok = [
        p.category == "safe" or p.category == "violence" and p.severity == 1
        for r, p in zip(rows, preds)
        if r["category"] == "safe"
    ]
    return float(np.mean(ok))


def _decisions(rows, preds, audience, action_for) -> dict:
    """Block recall (true blocks the prediction also blocks), false blocks (allowed or flagged
    sentences the prediction blocks) and agreement of the three-way decision."""
    true = [action_for(r["category"], r["severity"], audience) for r in rows]
    got = [action_for(p.category, p.severity, audience) for p in preds]
    blocks = [g == "block" for t, g in zip(true, got) if t == "block"]
    not_blocks = [g == "block" for t, g in zip(true, got) if t != "block"]
    return {
        "true_blocks": len(blocks),
        "block_recall": float(np.mean(blocks)) if blocks else 1.0,
        "false_block_rate": float(np.mean(not_blocks)) if not_blocks else 0.0,
        "decision_agreement": float(np.mean([t == g for t, g in zip(true, got)])),
    }


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
    print(
        f"scoring time per sentence (batched)  {res['ms_per_sentence']:.1f} ms; MiniLM embedding alone "
        f"{res['ms_per_sentence_embedding_only']:.1f} ms (ratio "
        f"{res['ms_per_sentence'] / res['ms_per_sentence_embedding_only']:.2f}x)"
    )
    one = res["ms_one_sentence"]
    print(f"one sentence per call (streaming)  {one['median']:.1f} ms median, {one['p95']:.1f} ms p95\n")
    print(f"{'category':<12}{'precision':>10}{'recall':>8}{'F1':>7}{'n':>5}")
    for k, v in res["per_category"].items():
        print(f"{k:<12}{v['precision']:>10.3f}{v['recall']:>8.3f}{v['f1']:>7.3f}{v['n']:>5}")
    print("\nconfusion (rows: true, columns: predicted)")
    print(" " * 12 + "".join(f"{k[:6]:>7}" for k in CATEGORIES))
    for k, row in zip(CATEGORIES, res["confusion"]):
        print(f"{k:<12}" + "".join(f"{c:>7}" for c in row))
    base = res["keyword_baseline"]
    print(
        f"\n{'audience':<10}{'method':<10}{'true blocks':>12}{'block recall':>14}{'false blocks':>14}{'agreement':>11}"
    )
    for aud in res["audiences"]:
        for name, d in (("model", res["audiences"][aud]), ("keywords", base["audiences"][aud])):
            print(
                f"{aud:<10}{name:<10}{d['true_blocks']:>12}{d['block_recall']:>14.3f}{d['false_block_rate']:>14.3f}"
                f"{d['decision_agreement']:>11.3f}"
            )
    print(
        f"\nkeyword baseline: category macro-F1 {base['macro_f1']:.3f} (model {res['macro_f1']:.3f}); safe sentences "
        f"still allowed for children {base['hard_negatives_passed']:.3f} (model {res['hard_negatives_passed']:.3f})"
    )


if __name__ == "__main__":
    main()
