#!/usr/bin/env python
"""Prompt styles for the embedded model, compared on the opening scene of the development requests.

Each style prompts the opening scene of each of story_quality.DEV's requests (never the held-out
ones) with the same plan, cast and sampling; one candidate, no steering, no gate, so that only the
prompt differs. The text is scored by the benchmark's own measures (benchmarks/story_measures.py):
premise recall by Snowball stems, sentences that talk about the writing by its rule list,
perplexity under the model, and the model's mean log-probability as it wrote.

- task: the engine's "task" style (agents/prompts.task_messages: the brief in the system message,
  "Write scene 1 of N, about W words..." in the user message);
- continuation: the engine's "continuation" style (agents/prompts.continuation_messages: a brief and
  the scene's direction, the reply begun with "Name, a <subject>, had");
- exemplar: a short instruction with a one-paragraph exemplar of the register asked for;
- plain: "Write a short story. PREMISE" and nothing else (the single prompt the issue's trial used).

    .venv/bin/python benchmarks/prompt_styles.py [--tokens 200] [--seeds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics

from emotional_engine.agents import emotional_intelligence as emotion_agent
from emotional_engine.agents.prompts import continuation_messages, opening_words, task_messages
from emotional_engine.agents.run import StoryRun
from emotional_engine.agents.story import plan_story
from emotional_engine.domain import StoryRequest
from emotional_engine.engine import Engine
from emotional_engine.lm.sampling import SamplingParams
from story_measures import perplexity, premise_recall, writing_talk_rate
from story_quality import DEV

EXEMPLAR = (
    "The rain had not stopped for three days. Mara pulled her coat tighter and walked down to the harbour, "
    "where the boats knocked together like old friends. She found the envelope wedged under the door of the "
    "net shed, her name on it in her father's careful hand."
)


def prompts(req: StoryRequest, run: StoryRun) -> dict[str, tuple[list[dict[str, str]], str]]:
    """Each style's messages for the opening scene, and the words its reply begins with."""
    plan = plan_story(req, run.profile.story.structure, [run.cast[0].name])
    scene = plan.scenes[0]
    guide = emotion_agent.guidance(scene.target, req.sampling.temperature)
    lead = run.cast[0]
    args = (req, run.profile, plan, run.cast, scene, guide, "")
    return {
        "task": (task_messages(*args), ""),
        "continuation": (continuation_messages(*args), opening_words(scene, plan, run.cast, req.premise)),
        "exemplar": (
            [
                {
                    "role": "user",
                    "content": f'The register I want, from another story:\n"{EXEMPLAR}"\n\nIn that register, '
                    f"write the opening of a story set in {run.profile.name}. {req.premise} The main character "
                    f"is {lead.name} ({lead.pronouns}).",
                }
            ],
            "",
        ),
        "plain": ([{"role": "user", "content": f"Write a short story. {req.premise}"}], ""),
    }


async def main(args) -> dict:
    engine = Engine(candidates=1)
    deps = await engine.load()
    gen = deps.generator
    rows: dict[str, list[dict]] = {}
    for item in DEV:
        req = StoryRequest(premise=item.premise, culture=item.culture, arc=item.arc, words=300, seed=item.seed)
        run = StoryRun.start(req, deps, item.seed)
        for style, (messages, begun) in prompts(req, run).items():
            for seed in range(args.seeds):
                params = SamplingParams(max_tokens=args.tokens, temperature=0.8, top_p=0.92, repetition_penalty=1.1,
                                        seed=item.seed * 10 + seed)  # fmt: skip
                done = await gen.complete(messages, params)
                text = begun + done.text
                rows.setdefault(style, []).append(
                    {
                        "recall": premise_recall(text, req.premise),
                        "talk": writing_talk_rate(text),
                        "perplexity": perplexity(gen, text),
                        "logprob": done.mean_logprob,
                        "text": text,
                    }
                )
        print(f"{item.culture} {item.premise[:60]}", flush=True)
    print(f"\n{len(DEV)} development premises x {args.seeds} seeds, {args.tokens} tokens each")
    print(f"{'style':<14}{'recall':>8}{'talk':>8}{'perplexity':>12}{'logprob':>9}")
    summary = {}
    for style, rs in rows.items():
        summary[style] = {k: statistics.mean(r[k] for r in rs) for k in ("recall", "talk", "perplexity", "logprob")}
        s = summary[style]
        print(f"{style:<14}{s['recall']:>8.3f}{s['talk']:>8.3f}{s['perplexity']:>12.1f}{s['logprob']:>9.2f}")
    return {"rows": rows, "summary": summary}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tokens", type=int, default=200)
    ap.add_argument("--seeds", type=int, default=2)
    a = ap.parse_args()
    asyncio.run(main(a))
