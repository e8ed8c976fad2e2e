"""The adherence measures (agents/adherence.py) on hand-labelled real text.

- tests/data/adherence_openings.jsonl: scene openings (two sentences) with the premise they were
  written for, labelled on-premise or not by reading them. From the engine's saved stories
  (benchmarks/results/consistency, nearly all drifted), from the embedded model answering a plain
  "Write a short story. PREMISE" (mostly on-premise), and the latter paired with another premise
  (fluent, and not the story asked for). Split dev/test within each label and source; the
  threshold is chosen on dev (best F1) and applied to test.
- benchmarks/results/consistency: the engine's saved stories, scored whole and by their
  model-written outline's first three lines, against their premise (how often the plan itself
  has left the premise before a scene is written).
- tests/data/meta_sentences.jsonl: sentences from the same openings, labelled as talk about the
  writing (a critique, an assistant's reply, a summary of "the story") or story; scored with the
  gate's rules (`is_meta`). These sentences all passed the gate once, so its recall here is what
  it misses in shown text.
- tests/data/planted_stories.jsonl: real engine outputs that talk about the writing, answer as an
  assistant or drift off the premise, beside on-premise stories, with the scores the other agents
  gave them; `overall` recomputed now (premise adherence and the talk measures measured again):
  every planted text must score under the stories' median (tests/agents/test_quality_planted.py).

    .venv/bin/python benchmarks/adherence_eval.py
"""

from __future__ import annotations

import json
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"


def load(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def precision_recall(predicted: list[bool], gold: list[bool]) -> tuple[float, float]:
    tp = sum(p and g for p, g in zip(predicted, gold))
    return tp / max(1, sum(predicted)), tp / max(1, sum(gold))


def best_threshold(scores: list[float], gold: list[bool]) -> float:
    """The threshold (score >= t is positive) with the best F1 on these scores."""

    def f1(t: float) -> float:
        p, r = precision_recall([s >= t for s in scores], gold)
        return 2 * p * r / (p + r) if p + r else 0.0

    return max(sorted(set(scores)), key=f1)


def evaluate_relevance(embed, rows: list[dict]) -> dict:
    from emotional_engine.agents.adherence import lexical_recall, relevance

    for r in rows:
        r["relevance"] = relevance(embed, [r["text"]], r["premise"])[0]
        r["lexical"] = lexical_recall(r["text"], r["premise"])
    from sklearn.metrics import roc_auc_score

    out = {}
    for measure in ("relevance", "lexical"):
        dev = [r for r in rows if r["split"] == "dev"]
        t = best_threshold([r[measure] for r in dev], [r["on_premise"] for r in dev])
        out[measure] = {"threshold": t}
        for split in ("dev", "test"):
            part = [r for r in rows if r["split"] == split]
            p, rec = precision_recall([r[measure] >= t for r in part], [r["on_premise"] for r in part])
            gold = [r["on_premise"] for r in part]
            out[measure][split] = {
                "n": len(part),
                "positives": sum(gold),
                "precision": p,
                "recall": rec,
                "auc": roc_auc_score(gold, [r[measure] for r in part]),
            }
    return out


def evaluate_meta(rows: list[dict]) -> dict:
    from emotional_engine.agents.adherence import is_meta

    p, r = precision_recall([is_meta(x["sentence"]) for x in rows], [x["meta"] for x in rows])
    return {"n": len(rows), "meta": sum(x["meta"] for x in rows), "precision": p, "recall": r}


def saved_stories(embed) -> dict:
    """Relevance to the premise of the saved stories' outlines (first three lines) and whole texts."""
    import numpy as np

    from emotional_engine.agents.adherence import ON_PREMISE, relevance

    saved = Path(__file__).resolve().parent / "results" / "consistency"
    outlines, stories = [], []
    for path in sorted(saved.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if "story" not in data:  # a story still being written
            continue
        premise, scenes = data["item"]["premise"], data["story"]["scenes"]
        lines = [
            f"at the {o['place']}, {o['lead']} leads: {o['event']}" for o in (s.get("outline") for s in scenes) if o
        ]
        if lines:
            outlines.append(relevance(embed, [" ".join(lines[:3])], premise)[0])
        stories.append(relevance(embed, [data["story"]["text"]], premise)[0])
    return {
        name: {"n": len(v), "median": float(np.median(v)), "on_premise": float(np.mean(np.array(v) >= ON_PREMISE))}
        for name, v in (("outline", outlines), ("story", stories))
    }


def planted_overall(embed, rows: list[dict]) -> list[float]:
    """Each planted-set text's `overall` as the quality agent gives it now."""
    from emotional_engine.agents import adherence, quality

    out = []
    for r in rows:
        premise_adherence, _, reasons = adherence.story_adherence(embed, r["premise"], [r["text"]], [None])
        q = quality.assess(
            emotion_distances=[2 * (1 - r["emotion_fit"])],
            character_consistency=r["character_consistency"],
            cultural_fit=r["cultural_fit"],
            coherence_score=r["coherence"],
            text=r["text"],
            reasons=reasons,
            premise_adherence=premise_adherence,
        )
        out.append(q.overall)
    return out


def main() -> None:
    from emotional_engine.emotion import EmotionModel

    model = EmotionModel.load()

    def embed(texts):
        return model.embedder.encode(texts, batch_size=32, normalize_embeddings=True)

    rel = evaluate_relevance(embed, load("adherence_openings.jsonl"))
    print("premise adherence of openings (threshold chosen on dev)")
    print(f"{'measure':<12}{'threshold':>10}{'split':>7}{'n':>5}{'on':>5}{'precision':>11}{'recall':>8}{'ROC AUC':>9}")
    for measure, res in rel.items():
        for split in ("dev", "test"):
            s = res[split]
            print(
                f"{measure:<12}{res['threshold']:>10.3f}{split:>7}{s['n']:>5}{s['positives']:>5}"
                f"{s['precision']:>11.3f}{s['recall']:>8.3f}{s['auc']:>9.3f}"
            )
    print("\nthe engine's saved stories (benchmarks/results/consistency), relevance to their premise")
    for name, r in saved_stories(embed).items():
        print(f"{name:<10} n {r['n']:>4}  median {r['median']:.3f}  on-premise (>= threshold) {r['on_premise']:.2f}")
    meta = evaluate_meta(load("meta_sentences.jsonl"))
    print(
        f"\ntalk about the writing, the gate's rules: {meta['n']} sentences, {meta['meta']} meta: "
        f"precision {meta['precision']:.3f}, recall {meta['recall']:.3f}"
    )
    rows = load("planted_stories.jsonl")
    now = planted_overall(embed, rows)
    print("\nthe planted set, overall then (the engine before issue 14) and now")
    for kind in ("good", "meta", "assistant", "drift"):
        then = [r["overall_then"] for r in rows if r["kind"] == kind]
        scores = [o for o, r in zip(now, rows) if r["kind"] == kind]
        print(
            f"{kind:<10} n {len(scores):>2}  then {min(then):.2f}-{max(then):.2f}  "
            f"now {min(scores):.2f}-{max(scores):.2f}"
        )


if __name__ == "__main__":
    main()
