#!/usr/bin/env python
"""Emotion control: does the emotion-attention adapter steer the embedded model's emotion better
than prompting alone, at what cost to fluency and speed?

Scenes: each of the nine target emotions x premises (ten by default; `--premises 2` is the reduced
run). Conditions, all in one run, on one loaded model:
  (a) the base model prompted with the target emotion
  (b) (a) + logit steering (the engine's: emotion/steering.py at strength 1.0)
  (c) (a) + the emotion-attention adapter conditioned on the target (no logit steering)
  (d) adapter + logit steering
  (e) (d) + reranking of 4 candidates by our emotion model
Measures, per condition: share of scenes whose measured emotion is the target and mean |measured
valence - target valence|, by
  - our emotion model (it also labelled the adapter's training data and does the reranking in e);
  - an independent judge: the base model's own zero-shot likelihood of each emotion word after
    "The feeling of this passage is", calibrated by the same likelihoods after a content-free
    passage (Zhao et al. 2021); its valence is the circumplex valence under those probabilities.
Also: perplexity of held-out Brown fiction (documents the adapter never saw) under the adapted
model given each sentence's measured emotion, against the base model; ms per generated token with
and without the adapter (batch 1 and batch 8).

    .venv/bin/python benchmarks/emotion_control.py [--premises 2] [--json FILE] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import queue
import statistics
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from emotional_engine.agents import emotional_intelligence as emotion_agent
from emotional_engine.domain import SceneTarget
from emotional_engine.emotion import EmotionModel
from emotional_engine.emotion.labels import CIRCUMPLEX, LABELS
from emotional_engine.emotion.model import HEAD_PATH
from emotional_engine.emotion.steering import LogitBias, load_or_build
from emotional_engine.lm import emotion_attention as ea
from emotional_engine.lm.batcher import ContinuousBatcher
from emotional_engine.lm.builtin import BuiltinGenerator
from emotional_engine.lm.generator import Completion
from emotional_engine.lm.gguf import default_cache_dir
from emotional_engine.lm.sampling import SamplingParams

PREMISES = [
    "A night-shift nurse finds a stray dog waiting outside the hospital every morning.",
    "A retired train conductor teaches his granddaughter to repair an old radio.",
    "Two sisters return to their childhood home to sell it.",
    "A fisherman's boat drifts into fog far from the harbour.",
    "A young teacher receives a letter from a student she taught twenty years ago.",
    "A baker opens her shop on the morning of the town's flood.",
    "A boy finds a key that fits no door in his grandfather's house.",
    "Neighbours meet in the stairwell during a power cut.",
    "A musician plays her last concert before leaving the city.",
    "A farmer waits for rain through a long dry summer.",
]
JUDGE_SUFFIX = "\n\nThe feeling of this passage is"
CONTENT_FREE = ["N/A", "", "[MASK]"]  # the judge's prior: mean log-likelihoods after these


def scene_prompt(premise: str, emotion: str) -> list[dict[str, str]]:
    return [
        {
            "role": "user",
            "content": f"Premise: {premise}\nWrite one short scene of about 80 words from this "
            f"story. The scene's emotion is {emotion}: the reader must feel {emotion}. "
            "Write only the scene.",
        }
    ]


def run_all(engine: ContinuousBatcher, jobs: list[tuple[list[dict], SamplingParams, list]]) -> list[Completion]:
    """Submit every job at once (continuous batching), collect completions in order."""
    qs = []
    for prompt, params, procs in jobs:
        q: queue.Queue = queue.Queue()
        engine.submit(engine.encode_prompt(prompt), params, q.put, processors=procs)
        qs.append(q)
    out = []
    for q in qs:
        pieces = []
        while not pieces or pieces[-1].finish_reason is None:
            pieces.append(q.get(timeout=1800))
        out.append(Completion.from_pieces(pieces))
    return out


class ZeroShotJudge:
    """The base model's calibrated likelihood of each emotion word as the passage's feeling."""

    def __init__(self, model, tok):
        self.model, self.tok = model, tok
        words = [tok.encode(" " + w) for w in LABELS]
        if any(len(w) != 1 for w in words):
            raise ValueError("the judge needs every emotion word to be one token for this tokenizer")
        self.word_ids = torch.tensor([w[0] for w in words])
        self.prior = self._loglik(CONTENT_FREE).mean(axis=0)

    @torch.inference_mode()
    def _loglik(self, texts: list[str], batch: int = 8) -> np.ndarray:
        """(len(texts), 9) log-probabilities of each emotion word right after the judge prompt."""
        out = []
        for i in range(0, len(texts), batch):
            rows = [self.tok.encode(t.strip() + JUDGE_SUFFIX)[-300:] for t in texts[i : i + batch]]
            T = max(map(len, rows))
            idx = torch.tensor([r + [0] * (T - len(r)) for r in rows])  # right padding: causal, so harmless
            logits, _ = self.model(idx)  # no context: the base model
            last = logits[torch.arange(len(rows)), torch.tensor([len(r) - 1 for r in rows])]
            out.append(F.log_softmax(last.float(), dim=-1)[:, self.word_ids].numpy())
        return np.concatenate(out)

    def judge(self, texts: list[str]) -> list[tuple[str, float]]:
        """(emotion, valence) per text."""
        s = self._loglik(texts) - self.prior
        p = np.exp(s - s.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        v = p @ np.array([CIRCUMPLEX[k][0] for k in LABELS])
        return [(LABELS[int(pi.argmax())], float(vi)) for pi, vi in zip(p, v)]


@torch.inference_mode()
def heldout_perplexity(model, tok, n_chunks: int, seq_len: int = 128) -> dict[str, float]:
    from emotional_engine.training.adapter import make_chunks, split_docs
    from emotional_engine.training.corpus import corpus_dir, load_labelled

    path = corpus_dir() / "brown_fiction_labelled.jsonl"
    _, held = split_docs(load_labelled(path), every=10)  # the documents training held out
    ch = make_chunks(held, tok.encode, seq_len)
    ch.tokens, ch.ctx = ch.tokens[-n_chunks:], ch.ctx[-n_chunks:]  # training evaluated the first ones
    nll = {"adapter": 0.0, "base": 0.0}
    for i in range(0, len(ch.tokens), 4):
        x, y, c = ch.tokens[i : i + 4, :-1], ch.tokens[i : i + 4, 1:], ch.ctx[i : i + 4]
        nll["adapter"] += float(model(x, y, ctx=c)[1]) * x.shape[0]
        nll["base"] += float(model(x, y)[1]) * x.shape[0]
    return {k: math.exp(v / len(ch.tokens)) for k, v in nll.items()}


def ms_per_token(engine: ContinuousBatcher, ctx: list[float] | None, batch: int, tokens: int, reps: int) -> float:
    params = SamplingParams(temperature=0.0, max_tokens=tokens, ignore_eos=True, emotion_context=ctx)
    prompt = scene_prompt(PREMISES[0], "joy")
    runs = []
    for _ in range(reps):
        t0 = time.perf_counter()
        done = run_all(engine, [(prompt, params, [])] * batch)
        runs.append(1000 * (time.perf_counter() - t0) / sum(d.completion_tokens for d in done))
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--premises", type=int, default=len(PREMISES), help="premises per emotion (10 = full run)")
    ap.add_argument("--candidates", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=140)
    ap.add_argument("--ppl-chunks", type=int, default=48)
    ap.add_argument("--speed-reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--adapter", default=str(ea.SHIPPED_PATH))
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    gen = BuiltinGenerator.load(emotion_adapter=Path(args.adapter), max_batch=16)
    engine, tok, model = gen.batcher, gen.batcher.tok, gen.batcher.model
    contexts = gen.emotion_contexts
    print(f"model {gen.info.name}, adapter {gen.info.adapter}, {args.premises} premises x {len(LABELS)} emotions")

    # the engine's logit steering (the embedded model's shipped table), one bias per target emotion
    table = load_or_build(gen.vocabulary(), None, HEAD_PATH, default_cache_dir())
    steering = {e: LogitBias(table.bias(e, CIRCUMPLEX[e][0], 1.0)) for e in LABELS}
    arms = {"a": (False, False), "b": (False, True), "c": (True, False), "d": (True, True)}
    jobs, keys = [], []
    for p, premise in enumerate(PREMISES[: args.premises]):
        for e in LABELS:
            for arm, (use_adapter, steer) in arms.items():
                for k in range(args.candidates if arm == "d" else 1):  # (e) reranks (d)'s candidates
                    params = SamplingParams(
                        max_tokens=args.max_tokens,
                        temperature=0.8,
                        top_p=0.95,
                        repetition_penalty=1.1,
                        seed=1000 * p + 10 * LABELS.index(e) + k,
                        emotion_context=contexts[e] if use_adapter else None,
                    )
                    jobs.append((scene_prompt(premise, e), params, [steering[e]] if steer else []))
                    keys.append((p, e, arm, k))
    t0 = time.perf_counter()
    done = run_all(engine, jobs)
    gen_s = time.perf_counter() - t0
    print(f"generated {len(done)} texts, {sum(d.completion_tokens for d in done)} tokens in {gen_s:.0f} s")
    texts = {key: d.text.strip() for key, d in zip(keys, done)}

    # speed while only the scheduler thread has run torch (see threads.py); alternating arms
    speed = {}
    for batch in (1, 8):
        base = ms_per_token(engine, None, batch, 48, args.speed_reps)
        adapted = ms_per_token(engine, contexts["joy"], batch, 48, args.speed_reps)
        speed[batch] = {"base_ms": base, "adapter_ms": adapted, "ratio": adapted / base}
        print(f"ms/token batch {batch}: base {base:.2f}, adapter {adapted:.2f}, ratio {adapted / base:.3f}")
    engine.close()

    em = EmotionModel.load()
    measured = dict(zip(texts, em.score_passages(list(texts.values()))))
    judge = ZeroShotJudge(model, tok)
    gold = [json.loads(line) for line in (Path(__file__).parent.parent / "tests/data/emotion_test.jsonl").open()]
    judge_acc = float(np.mean([j[0] == g["label"] for j, g in zip(judge.judge([g["text"] for g in gold]), gold)]))
    print(
        f"judge accuracy on the {len(gold)} hand-written test sentences: {judge_acc:.3f} (chance {1 / len(LABELS):.3f})"
    )
    judged = dict(zip(texts, judge.judge(list(texts.values()))))

    rows = {arm: [] for arm in "abcde"}
    for p in range(args.premises):
        for e in LABELS:
            target = SceneTarget(valence=CIRCUMPLEX[e][0], emotion=e)
            for arm in "abcd":
                rows[arm].append((e, measured[(p, e, arm, 0)], judged[(p, e, arm, 0)]))
            cands = [(p, e, "d", k) for k in range(args.candidates)]
            best = cands[emotion_agent.choose([measured[c] for c in cands], target).index]
            rows["e"].append((e, measured[best], judged[best]))

    table = {}
    for arm, rs in rows.items():
        table[arm] = {
            "match_emotion_model": float(np.mean([m.emotion == e for e, m, _ in rs])),
            "valence_dist_emotion_model": float(np.mean([abs(m.valence - CIRCUMPLEX[e][0]) for e, m, _ in rs])),
            "match_judge": float(np.mean([j[0] == e for e, _, j in rs])),
            "valence_dist_judge": float(np.mean([abs(j[1] - CIRCUMPLEX[e][0]) for e, _, j in rs])),
        }
    names = {
        "a": "prompt only",
        "b": "+ logit steering",
        "c": "+ adapter",
        "d": "adapter + steering",
        "e": f"(d) + rerank {args.candidates}",
    }
    print(
        f"\n{'condition':<26} {'match (emotion model)':>22} {'|dv| (emotion model)':>21} "
        f"{'match (judge)':>14} {'|dv| (judge)':>13}"
    )
    for arm, t in table.items():
        print(
            f"({arm}) {names[arm]:<22} {t['match_emotion_model']:>22.3f} {t['valence_dist_emotion_model']:>21.3f} "
            f"{t['match_judge']:>14.3f} {t['valence_dist_judge']:>13.3f}"
        )
    per_emotion = {
        arm: {e: float(np.mean([j[0] == e for e2, _, j in rs if e2 == e])) for e in LABELS} for arm, rs in rows.items()
    }

    ppl = heldout_perplexity(model, tok, args.ppl_chunks)
    print(
        f"\nheld-out perplexity: base {ppl['base']:.3f}, adapter (own contexts) {ppl['adapter']:.3f}, "
        f"ratio {ppl['adapter'] / ppl['base']:.4f}"
    )

    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": f"{platform.machine()} {platform.processor()} threads={torch.get_num_threads()}",
                    "premises": args.premises,
                    "adapter": gen.info.adapter,
                    "table": table,
                    "per_emotion_judge": per_emotion,
                    "perplexity": ppl,
                    "speed": speed,
                    "judge_accuracy_test_set": judge_acc,
                    "generation_s": gen_s,
                    "samples": {
                        f"{p}-{e}-{arm}": texts[(p, e, arm, 0)]
                        for p in range(min(2, args.premises))
                        for e in LABELS
                        for arm in "acd"
                    },
                },
                f,
                indent=2,
            )


if __name__ == "__main__":
    main()
