#!/usr/bin/env python
"""Choose the weights of the candidate choice (agents/choice.py) on the development requests.

The engine writes each of story_quality.DEV's stories (never its held-out requests) with the
weights it has; every choice between candidates is recorded: the candidates' openings and their
four features. Each weight setting of the grid then chooses again among the recorded candidates,
and the choice is scored by measures the engine does not use:

- premise recall of the chosen opening by Snowball stems (story_measures.premise_recall),
- its emotion fit, 1 - distance / 2 (the emotion target is the point of the choice),
- talk about the writing by the benchmark's own rules (story_measures.writing_talk_rate).

    objective = mean(premise recall) + mean(emotion fit) - mean(writing talk)

The grid's best few and the emotion-only choice are printed. A choice recorded under one setting
would have led the story elsewhere under another; the grid re-chooses scene by scene only.

    .venv/bin/python benchmarks/tune_choice.py [--words 400] [--candidates 4] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import statistics
from dataclasses import asdict

from emotional_engine.agents import choice
from emotional_engine.domain import StoryRequest
from emotional_engine.engine import Engine
from story_measures import premise_recall, writing_talk_rate
from story_quality import DEV

GRID = {
    "emotion": [1.0],
    "adherence": [0.0, 0.5, 1.0, 2.0, 3.0, 4.0],
    "fluency": [0.0, 0.25, 0.5, 1.0],
    "meta": [0.0, 1.0, 2.0, 4.0],
}


async def record(engine: Engine, words: int) -> tuple[list[dict], list[dict]]:
    """Every choice the engine makes while writing the DEV stories (premise, openings, features), and
    the stories (request, text, quality)."""
    choices: list[dict] = []
    stories: list[dict] = []
    premise = {"now": ""}
    found = choice.candidates

    def recording(embed, texts, distances, fluencies, references):
        out = found(embed, texts, distances, fluencies, references)
        choices.append({"premise": premise["now"], "texts": list(texts), "candidates": [asdict(c) for c in out]})
        return out

    choice.candidates = recording
    try:
        for item in DEV:
            premise["now"] = item.premise
            req = StoryRequest(premise=item.premise, culture=item.culture, arc=item.arc, words=words, seed=item.seed)
            story = await engine.agenerate(req)
            stories.append({"request": req.model_dump(), "text": story.text, "quality": story.quality.model_dump()})
            print(f"{item.culture} {item.arc:<15} {len(story.text.split())} words, {len(choices)} choices so far")
    finally:
        choice.candidates = found
    return choices, stories


def score(choices: list[dict], w: choice.Weights) -> dict:
    recall, fit, talk = [], [], []
    for c in choices:
        k = choice.choose([choice.Candidate(**x) for x in c["candidates"]], w)
        text = c["texts"][k]
        recall.append(premise_recall(text, c["premise"]))
        fit.append(1 - c["candidates"][k]["distance"] / 2)
        talk.append(writing_talk_rate(text))
    r, f, t = statistics.mean(recall), statistics.mean(fit), statistics.mean(talk)
    return {"recall": r, "emotion_fit": f, "talk": t, "objective": r + f - t}


def main(args) -> dict:
    engine = Engine(candidates=args.candidates)
    choices, stories = asyncio.run(record(engine, args.words))
    rows = []
    for values in itertools.product(*GRID.values()):
        w = choice.Weights(**dict(zip(GRID, values)))
        rows.append({"weights": asdict(w), **score(choices, w)})
    rows.sort(key=lambda r: -r["objective"])
    emotion_only = {"weights": asdict(choice.Weights(1.0, 0.0, 0.0, 0.0))}
    emotion_only.update(score(choices, choice.Weights(1.0, 0.0, 0.0, 0.0)))
    current = {"weights": asdict(choice.WEIGHTS), **score(choices, choice.WEIGHTS)}
    print(f"\n{len(choices)} choices on {len(DEV)} development stories")
    print(f"{'emotion':>8}{'adher.':>8}{'fluency':>8}{'meta':>6} | {'recall':>7}{'emo fit':>8}{'talk':>7}{'obj':>7}")
    for label, r in [*((f"#{i + 1}", r) for i, r in enumerate(rows[:8])), ("emotion", emotion_only), ("now", current)]:
        w = r["weights"]
        print(
            f"{w['emotion']:>8.2f}{w['adherence']:>8.2f}{w['fluency']:>8.2f}{w['meta']:>6.1f} | "
            f"{r['recall']:>7.3f}{r['emotion_fit']:>8.3f}{r['talk']:>7.3f}{r['objective']:>7.3f}  {label}"
        )
    return {"stories": stories, "choices": choices, "grid": rows, "emotion_only": emotion_only, "current": current}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--words", type=int, default=400)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--json", help="also write the recorded choices and the grid here")
    a = ap.parse_args()
    result = main(a)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
