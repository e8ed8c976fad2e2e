"""Recall and precision of the character checker (agents/character_check.py) and of the sensitivity and
stereotype checker (culture/sensitivity.py) on their planted-error sets in tests/data.

Each passage carries its cast sheet, earlier facts and the expected errors (kind and a span of the
offending sentence). A finding is a true positive when its kind matches an expected error whose span
lies in the finding's sentence; a second finding on an already matched error is a duplicate (neither
true nor false); any other finding is a false positive. The split is fixed in the data: every second
passage of each group is held out ("test"), decided before the checker was tuned on "dev". After one
look at "test" led to general fixes, 40 more passages in five other cultures ("fresh") were written
and scored once, untouched by any tuning.

    python benchmarks/character_checker.py [--split dev|test|all]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "tests" / "data"
KINDS = ("foreign_name", "wrong_pronoun", "dead_acting", "contradiction")


def load(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / name).read_text(encoding="utf-8").splitlines() if line.strip()]


def character_findings(record: dict):
    """Run the checker on one passage: earlier text first (its facts are learned), then the passage."""
    from emotional_engine.agents.character_check import CharacterChecker, StoryFacts
    from emotional_engine.culture import load_profile
    from emotional_engine.domain import Character

    cast = [Character(**c) for c in record["cast"]]
    checker = CharacterChecker(cast, load_profile(record["culture"]), StoryFacts(dead=record["dead"]))
    if record["earlier"]:
        checker.learn(checker.check(record["earlier"]))
    return checker.check(record["text"]).findings


def score(records: list[dict], find, kinds) -> dict:
    """{kind: {tp, fp, fn}} plus 'overall'; `find(record)` -> findings with .kind and .sentence."""
    counts = {k: Counter() for k in (*kinds, "overall")}
    misses = []
    for r in records:
        expected = list(r["errors"])
        matched = set()
        for f in find(r):
            hit = next((i for i, e in enumerate(expected) if e["kind"] == f.kind and e["span"] in f.sentence), None)
            if hit is None:
                counts[f.kind]["fp"] += 1
                counts["overall"]["fp"] += 1
                misses.append((r["id"], "false positive", f.kind, f.sentence, getattr(f, "reason", "")))
            elif hit not in matched:
                matched.add(hit)
                counts[f.kind]["tp"] += 1
                counts["overall"]["tp"] += 1
        for i, e in enumerate(expected):
            if i not in matched:
                counts[e["kind"]]["fn"] += 1
                counts["overall"]["fn"] += 1
                misses.append((r["id"], "missed", e["kind"], e["span"], ""))
    return {"counts": counts, "misses": misses}


def rates(c: Counter) -> tuple[float, float]:
    recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 1.0
    precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 1.0
    return recall, precision


def table(title: str, result: dict, n: int) -> None:
    print(f"\n{title} ({n} passages)")
    print(f"{'kind':<16}{'tp':>5}{'fp':>5}{'fn':>5}{'recall':>9}{'precision':>11}")
    for kind, c in result["counts"].items():
        r, p = rates(c)
        print(f"{kind:<16}{c['tp']:>5}{c['fp']:>5}{c['fn']:>5}{r:>9.3f}{p:>11.3f}")


def sensitivity_findings(record: dict):
    from emotional_engine.culture.sensitivity import check

    return check(record["text"], record["culture"], record["audience"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--split", choices=("dev", "test", "fresh", "all"), default="all")
    ap.add_argument("--show-misses", action="store_true")
    args = ap.parse_args()
    splits = ("dev", "test", "fresh") if args.split == "all" else (args.split,)

    passages = load("character_passages.jsonl")
    t0 = time.perf_counter()
    character_findings(passages[0])  # builds the name lists once, outside the timing
    warm = time.perf_counter() - t0
    for split in splits:
        records = [r for r in passages if r["split"] == split]
        if not records:
            continue
        t0 = time.perf_counter()
        result = score(records, character_findings, KINDS)
        ms = 1000 * (time.perf_counter() - t0) / len(records)
        table(
            f"character checker, {split} split, {ms:.1f} ms per passage (first call {warm:.1f} s)", result, len(records)
        )
        if args.show_misses:
            for m in result["misses"]:
                print("  ", *m)

    labelled = load("sensitivity_passages.jsonl")
    for split in splits:
        records = [r for r in labelled if r["split"] == split]
        if not records:
            continue
        result = score(records, sensitivity_findings, ("stereotype", "sensitivity"))
        table(f"sensitivity and stereotype checker, {split} split", result, len(records))
        if args.show_misses:
            for m in result["misses"]:
                print("  ", *m)
    return 0


if __name__ == "__main__":
    sys.exit(main())
