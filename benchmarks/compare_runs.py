#!/usr/bin/env python
"""Paired comparison of story_quality.py runs on the same requests (issue 14's register LoRA table).

The first run is the reference; for every other run, each measure's mean and its paired difference
from the reference with a 95% bootstrap interval, as a markdown table; and whether the baseline
stories came out identical (they must: the baseline runs on the untuned model in every run).

    .venv/bin/python benchmarks/compare_runs.py benchmarks/results/story_quality.json \\
        benchmarks/results/story_quality_lora.json benchmarks/results/story_quality_lora_half.json
"""

from __future__ import annotations

import argparse
import json

from story_measures import bootstrap_ci  # benchmarks/ is on the path: the script's own folder

MEASURES = [
    ("premise_recall", "premise recall (stems)", 3),
    ("pmi", "LM premise PMI, nats", 2),
    ("writing_talk_rate", "sentences about the writing", "pct"),
    ("perplexity", "perplexity under the untuned model", 1),
    ("distinct_2", "distinct-2", 3),
    ("repeated_4gram_rate", "repeated 4-gram rate", 3),
    ("arc_r_model", "arc r, emotion model", 2),
    ("arc_r_vader", "arc r, VADER", 2),
    ("emotion_match", "scene emotion match", 2),
    ("abs_length_error", "length error", "pct"),
]


def fmt(x: float, spec) -> str:
    return f"{x * 100:.1f}%" if spec == "pct" else f"{x:.{spec}f}"


def main(paths: list[str]) -> None:
    runs = [json.load(open(p)) for p in paths]
    ref, others = runs[0], runs[1:]
    head = ["measure", paths[0]] + [c for p in paths[1:] for c in (p, "difference")]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for key, label, spec in MEASURES:
        base = [r["engine"][key] for r in ref["rows"]]
        cells = [label, fmt(sum(base) / len(base), spec)]
        for run in others:
            vals = [r["engine"][key] for r in run["rows"]]
            mean, lo, hi = bootstrap_ci([v - b for b, v in zip(base, vals)])
            cells += [fmt(sum(vals) / len(vals), spec), f"{fmt(mean, spec)} [{fmt(lo, spec)}, {fmt(hi, spec)}]"]
        print("| " + " | ".join(cells) + " |")
    for p, run in zip(paths[1:], others):
        same = all(a["baseline"]["text"] == b["baseline"]["text"] for a, b in zip(ref["rows"], run["rows"]))
        print(f"\nbaseline stories identical to the reference's in {p}: {same}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="story_quality.py --json files; the first is the reference")
    main(ap.parse_args().runs)
