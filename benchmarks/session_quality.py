#!/usr/bin/env python
"""Played sessions with the embedded model: do beats answer the player's action and stay in the premise?

Each session (a premise, a culture, a list of player actions) is played turn by turn through the
engine in this process. Per beat, with measures the engine does not choose by
(benchmarks/story_measures.py):

- premise recall: the share of the premise's content words (Snowball stems) found in the session's
  text so far (a single beat cannot hold a whole premise; the story told so far should);
- action recall: the share of the action's content words found in the beat;
- talk about the writing: sentences flagged by the benchmark's own rules;
- seconds to the first text and to the whole beat.

It prints one line per beat, the read-aloud text of one session, and the means. Compare against the
engine before this issue by checking out an earlier commit and running the same command.

    .venv/bin/python benchmarks/session_quality.py [--turns 4] [--json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time

from emotional_engine.domain import StoryRequest
from emotional_engine.engine import Engine
from story_measures import premise_recall, writing_talk_rate

SESSIONS = [
    (
        "A night ferry crosses a river in fog.",
        "en-US",
        [
            "I walk to the railing and look for the far shore.",
            "I ask the ferryman how long the crossing takes.",
            "A bell rings somewhere in the fog; I follow the sound.",
            "I find a child alone on the deck and ask where her parents are.",
        ],
    ),
    (
        "A girl searches the night market for her grandmother's lost cat.",
        "ja-JP",
        [
            "I ask the takoyaki seller if he has seen a grey cat.",
            "I follow a trail of paw prints behind the lantern stalls.",
            "I call the cat's name near the shrine gate.",
            "I hear a soft meow under a wooden cart.",
        ],
    ),
]


async def play(engine: Engine, premise: str, culture: str, actions: list[str], seed: int) -> list[dict]:
    session = await engine.session(StoryRequest(premise=premise, culture=culture, seed=seed), turns=len(actions) + 2)
    rows, told = [], ""
    for action in actions:
        t0, first, parts = time.perf_counter(), None, []
        async for piece in session.stream_turn(action):
            first = first if first is not None else time.perf_counter() - t0
            parts.append(piece)
        beat = "".join(parts)
        told += "\n\n" + beat
        rows.append(
            {
                "action": action,
                "beat": beat,
                "premise_recall": premise_recall(told, premise),
                "action_recall": premise_recall(beat, action),
                "talk": writing_talk_rate(beat),
                "first_text_s": first or 0.0,
                "beat_s": time.perf_counter() - t0,
                "words": len(beat.split()),
            }
        )
        r = rows[-1]
        print(
            f"  premise {r['premise_recall']:.2f} action {r['action_recall']:.2f} talk {r['talk']:.2f} "
            f"first {r['first_text_s']:.2f}s beat {r['beat_s']:.1f}s {r['words']}w | {beat[:90]!r}",
            flush=True,
        )
    await session.settle()
    return rows


async def main(args) -> dict:
    engine = Engine()
    sessions = []
    for k, (premise, culture, actions) in enumerate(SESSIONS):
        print(f"{culture}: {premise}")
        sessions.append({"premise": premise, "rows": await play(engine, premise, culture, actions[: args.turns], k)})
    beats = [r for s in sessions for r in s["rows"]]
    print("\nsession 1 as played:")
    for r in sessions[0]["rows"]:
        print(f"> {r['action']}\n{r['beat']}\n")
    summary = {
        key: statistics.mean(r[key] for r in beats)
        for key in ("premise_recall", "action_recall", "talk", "first_text_s", "beat_s", "words")
    }
    summary["first_text_s_median"] = statistics.median(r["first_text_s"] for r in beats)
    print(
        f"{len(beats)} beats: premise recall {summary['premise_recall']:.2f}, action recall "
        f"{summary['action_recall']:.2f}, talk about the writing {summary['talk']:.1%}, first text "
        f"{summary['first_text_s_median']:.2f}s (median), beat {summary['beat_s']:.1f}s, {summary['words']:.0f} words"
    )
    return {"sessions": sessions, "summary": summary}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("--json", help="also write the beats and numbers here")
    a = ap.parse_args()
    result = asyncio.run(main(a))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
