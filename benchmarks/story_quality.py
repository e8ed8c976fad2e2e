#!/usr/bin/env python
"""Story quality: does the engine's text follow the requested arc, against a single-model baseline?

For each request (six arcs x two cultures by default, 600 words) the engine writes a story and the
baseline writes one from a single prompt that carries everything (premise, culture, the arc in
words, the length), with no agents. Both texts are measured the same two ways, neither of which
is a score the agents optimise:

- arc fidelity (emotion model): Pearson correlation between the target arc and the valence the
  emotion model measures on ten equal windows of the final text;
- arc fidelity (VADER): the same with VADER's compound valence per window alone;
- scene emotion match: the share of the plan's scenes whose text (for the baseline: the same
  share of its words) has the scene's target emotion as top emotion;
- seconds per story, time to the first streamed text, and the engine's orchestration overhead
  per scene (everything but model forward passes).

    .venv/bin/python benchmarks/story_quality.py [--quick] [--words 600] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

import numpy as np

from emotional_engine.agents.story import plan_story
from emotional_engine.arcs import NAMED_ARCS
from emotional_engine.culture import load_profile
from emotional_engine.domain import StoryRequest
from emotional_engine.engine import Engine
from emotional_engine.lm.sampling import SamplingParams

PREMISES = {
    "en-US": "A night-shift nurse finds a stray dog waiting outside the hospital every morning.",
    "ja-JP": "A retired train conductor teaches his granddaughter to repair an old radio.",
}
ARC_WORDS = {
    "rags_to_riches": "it starts in misery and rises steadily to a happy ending",
    "tragedy": "it starts happy and falls steadily to a sad ending",
    "man_in_a_hole": "it starts well, falls into trouble in the middle, and climbs out to a happy ending",
    "icarus": "it starts low, rises to great happiness in the middle, then falls to a sad ending",
    "cinderella": "it rises, falls into despair, then rises to a happy ending",
    "oedipus": "it falls, rises to hope, then falls to a tragic ending",
}
WINDOWS = 10


def pearson(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    if a.std() == 0 or b.std() == 0:
        return 0.0
    return float(np.corrcoef(a, b)[0, 1])


def window_texts(text: str, n: int) -> list[str]:
    words = text.split()
    return [" ".join(words[(i * len(words)) // n : ((i + 1) * len(words)) // n]) or "." for i in range(n)]


def measure(text: str, request: StoryRequest, scene_emotions: list[str], emotion, vader) -> dict:
    target = request.arc_curve().targets(WINDOWS)
    model_v = [w.valence for w in emotion.analyze(text, WINDOWS)]
    vader_v = [vader.polarity_scores(t)["compound"] for t in window_texts(text, WINDOWS)]
    parts = emotion.score_passages(window_texts(text, len(scene_emotions)))
    match = float(np.mean([p.emotion == e for p, e in zip(parts, scene_emotions)]))
    return {"arc_r_model": pearson(target, model_v), "arc_r_vader": pearson(target, vader_v), "emotion_match": match}


async def baseline_story(engine: Engine, request: StoryRequest) -> tuple[str, float]:
    profile = load_profile(request.culture)
    prompt = [
        {
            "role": "user",
            "content": (
                f"Write a story of about {request.words} words set in {profile.name}. Premise: {request.premise} "
                f"Its emotional arc: {ARC_WORDS[request.arc]}."
            ),
        }
    ]
    params = SamplingParams(
        max_tokens=int(request.words * 1.6),
        temperature=request.sampling.temperature,
        top_p=request.sampling.top_p,
        repetition_penalty=request.sampling.repetition_penalty,
        seed=request.seed,
    )
    t0, first, parts = time.perf_counter(), None, []
    async for piece in engine.generator.stream(prompt, params):
        if piece.text and first is None:
            first = time.perf_counter() - t0
        parts.append(piece.text)
    return "".join(parts).strip(), first or 0.0


async def engine_story(engine: Engine, request: StoryRequest):
    t0, first, story = time.perf_counter(), None, None
    async for event in engine.stream(request):
        if event.kind == "text" and first is None:
            first = time.perf_counter() - t0
        if event.kind == "story_done":
            story = event.data
    return story, first or 0.0


async def main(args) -> dict:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    engine = Engine(candidates=args.candidates)
    emotion, vader = engine.emotion, SentimentIntensityAnalyzer()
    arcs = list(NAMED_ARCS)[: 2 if args.quick else 6]
    cultures = list(PREMISES)[: 1 if args.quick else 2]
    rows = []
    for culture in cultures:
        for arc in arcs:
            req = StoryRequest(premise=PREMISES[culture], arc=arc, culture=culture, words=args.words, seed=11)
            plan = plan_story(req, load_profile(culture).story.structure)
            t0 = time.perf_counter()
            story, first = await engine_story(engine, req)
            secs = time.perf_counter() - t0
            ours = measure(story.text, req, [s.target.emotion for s in plan.scenes], emotion, vader)
            ours.update(
                seconds=secs,
                first_text_s=first,
                overhead_ms=story.timings_ms["orchestration_overhead_per_scene"],
                words=len(story.text.split()),
            )
            t0 = time.perf_counter()
            text, bfirst = await baseline_story(engine, req)
            bsecs = time.perf_counter() - t0
            base = measure(text, req, [s.target.emotion for s in plan.scenes], emotion, vader)
            base.update(seconds=bsecs, first_text_s=bfirst, overhead_ms=0.0, words=len(text.split()))
            rows.append({"culture": culture, "arc": arc, "engine": ours, "baseline": base})
            print(
                f"{culture} {arc:<15} engine r={ours['arc_r_model']:+.2f}/{ours['arc_r_vader']:+.2f} "
                f"match={ours['emotion_match']:.2f} {secs:.0f}s | baseline r={base['arc_r_model']:+.2f}/"
                f"{base['arc_r_vader']:+.2f} match={base['emotion_match']:.2f} {bsecs:.0f}s",
                flush=True,
            )
    summary = {}
    for who in ("engine", "baseline"):
        vals = [r[who] for r in rows]
        summary[who] = {k: statistics.mean(v[k] for v in vals) for k in vals[0]}
        summary[who]["first_text_s_median"] = statistics.median(v["first_text_s"] for v in vals)
    print(f"\n{'':<28}{'engine':>10}{'baseline':>10}   target")
    for key, label, target in [
        ("arc_r_model", "arc r (emotion model)", ">= 0.8"),
        ("arc_r_vader", "arc r (VADER)", ">= 0.8"),
        ("emotion_match", "scene emotion match", ">= 0.7"),
        ("seconds", "seconds per story", "lower"),
        ("first_text_s_median", "first text (s, median)", "lower"),
        ("overhead_ms", "overhead ms per scene", "<= 5"),
    ]:
        print(f"{label:<28}{summary['engine'][key]:>10.3f}{summary['baseline'][key]:>10.3f}   {target}")
    return {"rows": rows, "summary": summary}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 arcs x 1 culture")
    ap.add_argument("--words", type=int, default=600)
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--json", help="also write the numbers here")
    a = ap.parse_args()
    result = asyncio.run(main(a))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
