#!/usr/bin/env python
"""Consistency by length, cultural fit across every culture, and depth of localisation.

Three parts, each a list of stories written with the engine (embedded model by default):

- length: stories of 500, 1,000, 2,500, 5,000 and 10,000 words (five each up to 2,500, three at
  5,000, two at 10,000; a different culture and premise for each), measured on the final text:
  character consistency (the character agent's share of name mentions that agree with the
  sheet), plot contradictions per 1,000 words (the finished story re-read scene by scene against a
  fresh story memory: memory.audit), emotion consistency (Pearson r between the target arc and the
  emotion model's valence on ten equal windows), off-culture names left in the text; per length
  the mean with a 95% t-interval. One 10,000-word story comes first, the rest shortest first.
- fit: one 600-word story per supported culture: off-culture names in the final text, the names
  the cultural agent replaced, the engine's cultural_fit.
- localisation: five premises x six cultures, written by the engine and by the single-model
  baseline (one prompt: the premise plus "set in CULTURE"). In every text, capitalised words away
  from a sentence start and every item of every culture profile are masked; the score is the mean
  TF-IDF cosine similarity between the versions of a premise (15 pairs each). Lower means the
  culture changed more than the names; target: the engine at least 30% lower than the baseline.
  Printed again on each version's first 200 words (overlap grows with length, and lengths vary)
  and on the versions written in English (one in another language overlaps nothing).

Each finished story is written to OUT/<id>.json at once and skipped when the run resumes; a story
being written keeps its plan and finished scenes in OUT/partial/<id>.json after every scene and
goes on from there, so a long story can be written across sessions. A progress line is printed
per scene.

    .venv/bin/python benchmarks/consistency.py [--parts length,fit,localisation] [--lengths 500,10000]
        [--candidates 2] [--limit N] [--out benchmarks/results/consistency] [--report | --remeasure]

`--remeasure` measures the saved stories of the parts again with the code's current measures
(after a checker fix) and writes nothing new.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import itertools
import json
import os
import re
import statistics
import time
from pathlib import Path

import numpy as np

from emotional_engine.agents import character as character_agent
from emotional_engine.agents.cultural import foreign_names
from emotional_engine.agents.run import SceneOutcome
from emotional_engine.agents.story import StoryPlan
from emotional_engine.culture import load_profile, profile_tags
from emotional_engine.culture.lexicon import name_like_words
from emotional_engine.domain import StoryRequest
from emotional_engine.engine import Engine
from emotional_engine.lm.sampling import SamplingParams
from emotional_engine.memory import audit, per_1000_words
from emotional_engine.threads import run_model
from story_quality import WINDOWS, pearson

LENGTHS = {500: 5, 1000: 5, 2500: 5, 5000: 3, 10000: 2}
PREMISES = [
    "A young woman inherits her grandmother's shop and discovers a debt the family never spoke of.",
    "Two brothers who have not spoken in years must travel together to a wedding.",
    "A schoolteacher finds an old letter hidden inside a library book.",
    "A fisherman's daughter has to decide whether to leave the village for the city.",
    "A neighbourhood prepares for a festival while a storm approaches.",
]
ARCS = ["man_in_a_hole", "rags_to_riches", "tragedy", "cinderella", "icarus"]
LENGTH_CULTURES = [
    "ja-JP",
    "yo-NG",
    "es-MX",
    "hi-IN",
    "de-DE",
    "ko-KR",
    "sw-KE",
    "pt-BR",
    "ar-EG",
    "en-GB",
    "vi-VN",
    "mi-NZ",
    "tr-TR",
    "fil-PH",
    "ru-RU",
    "zu-ZA",
    "bn-BD",
    "fr-FR",
    "id-ID",
    "am-ET",
]
LOC_CULTURES = ["en-US", "ja-JP", "yo-NG", "hi-IN", "es-MX", "ru-RU"]
SAME_LENGTH = 200  # words: localisation measured again on every version's first words
ENGLISH_SHARE = 0.30  # of a text's words English stop words: below it a version is not English prose
FIT_PREMISE = "A family gathers for an important celebration, and an old quarrel comes back."


# ---- the work list -------------------------------------------------------------------------------


def length_items(lengths: list[int]) -> list[dict]:
    """The stories of the lengths asked for; each keeps its id, culture and seed whatever the lengths asked."""
    items, c = [], itertools.count()
    for words in sorted(LENGTHS):
        for k in range(LENGTHS[words]):
            i = next(c)
            items.append(
                {
                    "id": f"length-{words}-{k}",
                    "part": "length",
                    "words": words,
                    "culture": LENGTH_CULTURES[i % len(LENGTH_CULTURES)],
                    "premise": PREMISES[k % 5],
                    "arc": ARCS[k % 5],
                    "seed": 100 + i,
                }
            )
    items = [it for it in items if it["words"] in lengths]
    longest = [it for it in items if it["words"] == 10000][:1]  # the one that matters most starts first
    return longest + [it for it in items if it not in longest]


def fit_items() -> list[dict]:
    return [
        {
            "id": f"fit-{tag}",
            "part": "fit",
            "words": 600,
            "culture": tag,
            "premise": FIT_PREMISE,
            "arc": "man_in_a_hole",
            "seed": 7,
        }
        for tag in profile_tags()
    ]


def localisation_items(words: int, premises: int = 5, cultures: int = 6) -> list[dict]:
    return [
        {
            "id": f"loc-{who}-{p}-{tag}",
            "part": "localisation",
            "who": who,
            "words": words,
            "culture": tag,
            "premise": PREMISES[p],
            "premise_index": p,
            "cultures": cultures,
            "arc": "man_in_a_hole",
            "seed": 11 + p,
        }
        for p in range(premises)
        for tag in LOC_CULTURES[:cultures]
        for who in ("engine", "baseline")
    ]


# ---- writing one story ---------------------------------------------------------------------------


def request_of(item: dict) -> StoryRequest:
    return StoryRequest(
        premise=item["premise"], arc=item["arc"], culture=item["culture"], words=item["words"], seed=item["seed"]
    )


async def engine_story(engine: Engine, item: dict, partial: Path) -> dict:
    """The engine's story, resumed after the scenes `partial` holds; `partial` is rewritten after
    every scene (plan, finished scenes, seconds so far)."""
    saved = json.loads(partial.read_text()) if partial.exists() else {"plan": None, "outcomes": [], "seconds": 0.0}
    done = [SceneOutcome.model_validate(o) for o in saved["outcomes"]]
    plan = StoryPlan.model_validate(saved["plan"]) if saved["plan"] else None
    if done:
        print(f"[{item['id']}] resuming after scene {len(done)}/{len(plan.scenes)}", flush=True)
    t0 = time.perf_counter()

    def on_event(ev):
        if ev.kind == "plan" and saved["plan"] is None:  # as it stands before the scenes move its targets
            saved["plan"] = ev.data.model_dump(mode="json")
        elif ev.kind == "checkpoint":
            saved["outcomes"].append(ev.data.model_dump(mode="json"))
            atomic_write(partial, {**saved, "seconds": saved["seconds"] + time.perf_counter() - t0})
            sc = ev.data.scene
            print(
                f"[{item['id']}] scene {sc.index + 1}/{len(saved['plan']['scenes'])} {len(sc.text.split())} "
                f"words {sc.measured.emotion if sc.measured else '-'} {time.perf_counter() - t0:.0f}s",
                flush=True,
            )

    partial.parent.mkdir(parents=True, exist_ok=True)
    story = await engine.agenerate(request_of(item), on_event, done, plan)
    return {"seconds": saved["seconds"] + time.perf_counter() - t0, "story": story.model_dump()}


async def baseline_story(engine: Engine, item: dict) -> dict:
    """The single-model baseline: the premise plus "set in CULTURE", one prompt, no agents."""
    req = request_of(item)
    prompt = [
        {
            "role": "user",
            "content": f"Write a story of about {req.words} words set in "
            f"{load_profile(req.culture).name}. Premise: {req.premise}",
        }
    ]
    params = SamplingParams(
        max_tokens=int(req.words * 1.6),
        temperature=req.sampling.temperature,
        top_p=req.sampling.top_p,
        repetition_penalty=req.sampling.repetition_penalty,
        seed=req.seed,
    )
    t0 = time.perf_counter()
    done = await engine.generator.complete(prompt, params)
    print(f"[{item['id']}] baseline {len(done.text.split())} words {time.perf_counter() - t0:.0f}s", flush=True)
    return {"seconds": time.perf_counter() - t0, "text": done.text.strip()}


# ---- measures ------------------------------------------------------------------------------------


def measure(engine: Engine, item: dict, story: dict) -> dict:
    from emotional_engine.domain import Story

    s = Story(**story)
    req = request_of(item)
    cast_words = {w for c in s.characters for w in c.name.split()}
    contradictions = audit([sc.text for sc in s.scenes], s.characters, engine.deps().embed)
    words = len(s.text.split())
    model_v = [w.valence for w in engine.emotion.analyze(s.text, WINDOWS)]
    characters = character_agent.check_mentions(s.text, s.characters)
    return {
        "words": words,
        "character_consistency": characters.character_consistency,
        "cast_mentions": sum(characters.mentions.values()),  # 1.0 over few mentions says little
        "plot_contradictions_per_1000_words": per_1000_words(len(contradictions), words),
        "contradictions": [c.reason for c in contradictions],
        "emotion_arc_r": pearson(req.arc_curve().targets(WINDOWS), model_v),
        "off_culture_names": sorted(foreign_names(s.text, req.culture, cast_words)),
        "cultural_fit": s.quality.cultural_fit,
        "repairs_in_writing": {
            k: s.memory.get(k) for k in ("contradictions_found", "contradictions_found_per_1000_words")
        },
    }


def changed_names(reasons: list[str]) -> list[str]:
    """The names the agents changed, from the story's quality reasons: the cultural agent's replacements
    ("replaced Luke (a name from en-GB) with Akemi") and the character agent's stand-ins ("Ever -> Karim")."""
    out = []
    for r in reasons:
        if m := re.search(r"replaced (\S+) \(a name from [^)]*\) with (.+)$", r):
            out.append(f"{m[1]} -> {m[2]} (culture)")
        elif m := re.search(r"character: (\S+) -> (\S+) \(\S+ is not in the cast\)", r):
            out.append(f"{m[1]} -> {m[2]} (cast)")
    return list(dict.fromkeys(out))


def profile_items() -> list[str]:
    """Every text item of every culture profile (places, foods, names, sayings...), longest first;
    the sensitivity checks are regular expressions, not words of the culture."""
    out: set[str] = set()

    def walk(v):
        if isinstance(v, str):
            out.update(p.strip().lower() for p in re.split(r"[;,()]", v) if len(p.strip()) > 2)
        elif isinstance(v, dict):
            for k, x in v.items():
                if k != "checks":
                    walk(x)
        elif isinstance(v, list | tuple):
            for x in v:
                walk(x)

    for tag in profile_tags():
        walk(load_profile(tag).model_dump())
    return sorted(out, key=len, reverse=True)


@functools.cache
def _item_pattern(items: tuple[str, ...]) -> re.Pattern:
    """The items as whole words, longest first ("boss" must not cut "bossy", nor "moon" "moonlight")."""

    def bounded(item: str) -> str:
        return (r"\b" if item[0].isalnum() else "") + re.escape(item) + (r"\b" if item[-1].isalnum() else "")

    return re.compile("|".join(bounded(i) for i in sorted(items, key=len, reverse=True)))


def masked(text: str, items: list[str]) -> str:
    caps = name_like_words(text)
    words = [w for w in text.split() if w.strip(".,;:!?\"'()“”‘’").removesuffix("'s") not in caps]
    return _item_pattern(tuple(items)).sub(" ", " ".join(words).lower())


def localisation_similarity(texts: dict[tuple[int, str], str]) -> tuple[float, list[float]]:
    """Mean TF-IDF cosine between the versions of each premise: (mean, per premise)."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.metrics.pairwise import cosine_similarity

    keys = sorted(texts)
    items = profile_items()
    tfidf = TfidfVectorizer(stop_words="english").fit_transform([masked(texts[k], items) for k in keys])
    sims = cosine_similarity(tfidf)
    per = []
    for p in sorted({k[0] for k in keys}):
        rows = [i for i, k in enumerate(keys) if k[0] == p]
        if len(rows) < 2:
            continue
        per.append(float(np.mean([sims[a, b] for a, b in itertools.combinations(rows, 2)])))
    return float(np.mean(per)), per


def english(text: str) -> bool:
    """English prose: at least ENGLISH_SHARE of its words are English stop words (prose has 0.4-0.55;
    the baseline wrote some versions in Spanish or in gibberish, which no other version overlaps)."""
    from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

    words = re.findall(r"\w+", text.lower())
    return sum(w in ENGLISH_STOP_WORDS for w in words) >= ENGLISH_SHARE * max(1, len(words))


def localisation_views(texts: dict[tuple[int, str], str]) -> dict[str, tuple[float, list[float]]]:
    """The measure as the issue defines it (all versions, whole texts), and as checks on it: on every
    version's first SAME_LENGTH words (TF-IDF overlap grows with length, and lengths vary), and on
    the English versions only (a version in another language or in gibberish overlaps nothing)."""
    first = {k: " ".join(t.split()[:SAME_LENGTH]) for k, t in texts.items()}
    only = {k for k, t in texts.items() if english(t)}
    return {
        "all versions": localisation_similarity(texts),
        f"first {SAME_LENGTH} words": localisation_similarity(first),
        "English versions": localisation_similarity({k: texts[k] for k in only}),
        f"English versions, first {SAME_LENGTH} words": localisation_similarity({k: first[k] for k in only}),
    }


def interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% t-interval half-width (nan for a single value)."""
    from scipy import stats

    m = float(np.mean(values))
    if len(values) < 2:
        return m, float("nan"), float(len(values))
    half = float(stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values)))
    return m, half, float(len(values))


# ---- the run -------------------------------------------------------------------------------------


def atomic_write(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)  # a crash never leaves half a file


def save(out: Path, item: dict, result: dict) -> None:
    atomic_write(out / f"{item['id']}.json", {"item": item, **result})


def _saved(out: Path, item: dict) -> dict:
    """A saved story's result (story, measures, seconds) without its item."""
    return {k: v for k, v in json.loads((out / f"{item['id']}.json").read_text()).items() if k != "item"}


def _finished(out: Path, item: dict) -> bool:
    path = out / f"{item['id']}.json"
    return path.exists() and (
        item.get("who") == "baseline" or "cast_mentions" in json.loads(path.read_text()).get("measures", {})
    )


async def run(args, engine: Engine | None = None) -> None:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = args.parts.split(",")
    lists = {
        "length": lambda: length_items([int(x) for x in args.lengths.split(",")])[: args.limit],
        "fit": lambda: fit_items()[: args.limit],
        "localisation": lambda: localisation_items(args.loc_words, args.limit or 5, args.loc_cultures),
    }
    work = [item for part in parts for item in lists[part]()]  # in the order the parts are named
    if args.remeasure:  # the saved stories, measured again with this code's measures; nothing is written
        engine = engine or Engine(candidates=args.candidates)
        for item in (it for it in work if it.get("who") != "baseline" and (out / f"{it['id']}.json").exists()):
            result = _saved(out, item)
            result["measures"] = await run_model(measure, engine, item, result["story"])
            save(out, item, result)
        report(out)
        return
    todo = [it for it in work if not _finished(out, it)]
    print(f"{len(work)} stories, {len(todo)} to write, {args.concurrency} at a time", flush=True)
    engine = engine or Engine(candidates=args.candidates)
    queue: asyncio.Queue[dict] = asyncio.Queue()
    for item in todo:
        queue.put_nowait(item)

    async def worker():  # stories run side by side: the runtime batches their candidates
        while not queue.empty():
            await write_and_measure(engine, out, queue.get_nowait())

    await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    report(out)


async def write_and_measure(engine: Engine, out: Path, item: dict) -> None:
    if item.get("who") == "baseline":
        save(out, item, await baseline_story(engine, item))
        return
    path = out / f"{item['id']}.json"
    if path.exists():  # written before a crash in measuring: measure only
        result = _saved(out, item)
    else:
        partial = out / "partial" / f"{item['id']}.json"
        result = await engine_story(engine, item, partial)
        save(out, item, result)  # the story is kept even if measuring fails
        partial.unlink()
    result["measures"] = await run_model(measure, engine, item, result["story"])  # torch: the model worker
    save(out, item, result)
    m = result["measures"]
    print(
        f"[{item['id']}] done: {m['words']} words, character {m['character_consistency']:.3f} over "
        f"{m['cast_mentions']} mentions, plot {m['plot_contradictions_per_1000_words']:.2f}/1k, arc r "
        f"{m['emotion_arc_r']:+.2f}, off-culture {len(m['off_culture_names'])}, {result['seconds']:.0f}s",
        flush=True,
    )


def short_scenes(story: dict) -> tuple[int, int, int]:
    """(scenes shown with under half the words asked for, of them empty, scenes), from the technical
    agent's length reasons ("scene 3: 40 words, asked for 150"; it names every scene over 10 % off)."""
    lengths = [re.match(r"scene \d+: (\d+) words, asked for (\d+)", r) for r in story["quality"]["reasons"]]
    short = [int(m[1]) for m in lengths if m and int(m[1]) < int(m[2]) / 2]
    return len(short), short.count(0), len(story["scenes"])


def load_results(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]


def report(out: Path) -> None:
    results = load_results(out)
    lengths = [r for r in results if r["item"]["part"] == "length"]
    if lengths:
        print(
            "\n| words | stories | character consistency | as written, before the gate "
            "| plot contradictions / 1k words | emotion arc r "
            "| cast mentions / 1k words | off-culture names | min per story |\n|---|---|---|---|---|---|---|---|---|"
        )
        for words in sorted({r["item"]["words"] for r in lengths}):
            rs = [r for r in lengths if r["item"]["words"] == words]
            columns = [
                [r["measures"]["character_consistency"] for r in rs],
                [r["story"]["quality"]["character_consistency"] for r in rs],  # the character agent's, as written
                *([r["measures"][k] for r in rs] for k in ("plot_contradictions_per_1000_words", "emotion_arc_r")),
            ]
            cells = []
            for values in columns:
                m, half, _ = interval(values)
                cells.append(f"{m:.3f} ± {half:.3f}" if half == half else f"{m:.3f}")
            off = sum(len(r["measures"]["off_culture_names"]) for r in rs)
            mentions = statistics.mean(1000 * r["measures"]["cast_mentions"] / r["measures"]["words"] for r in rs)
            mins = statistics.median(r["seconds"] for r in rs) / 60
            print(f"| {words:,} | {len(rs)} | {' | '.join(cells)} | {mentions:.1f} | {off} | {mins:.1f} |")
    fits = [r for r in results if r["item"]["part"] == "fit"]
    if fits:
        print("\n| culture | off-culture names left | names replaced | cultural_fit |\n|---|---|---|---|")
        for r in fits:
            m = r["measures"]
            changed = changed_names(r["story"]["quality"]["reasons"])
            print(
                f"| {r['item']['culture']} | {', '.join(m['off_culture_names']) or 'none'} | "
                f"{'; '.join(changed) or 'none'} | {m['cultural_fit']:.3f} |"
            )
    for part in ("length", "fit"):
        counts = [short_scenes(r["story"]) for r in results if r["item"]["part"] == part]
        if counts:
            short, empty, scenes = (sum(c[k] for c in counts) for k in range(3))
            print(f"\n{part}: {short} of {scenes} scenes shown with under half the words asked for ({empty} empty)")
    loc = [r for r in results if r["item"]["part"] == "localisation"]
    premises = {r["item"]["premise_index"] for r in loc}
    complete = [
        p
        for p in sorted(premises)
        if sum(r["item"]["premise_index"] == p for r in loc)
        == 2 * next(r["item"]["cultures"] for r in loc if r["item"]["premise_index"] == p)
    ]
    if complete:
        n = len({r["item"]["culture"] for r in loc})
        texts = {
            who: {
                (r["item"]["premise_index"], r["item"]["culture"]): r["story"]["text"] if who == "engine" else r["text"]
                for r in loc
                if r["item"]["who"] == who and r["item"]["premise_index"] in complete
            }
            for who in ("engine", "baseline")
        }
        views = {who: localisation_views(t) for who, t in texts.items()}
        for view in views["engine"]:
            eng, base = views["engine"][view], views["baseline"][view]
            ratio = eng[0] / base[0] if base[0] else float("nan")
            print(
                f"\nlocalisation ({len(complete)} premises x {n} cultures, masked TF-IDF cosine, {view}): "
                f"engine {eng[0]:.3f}, baseline {base[0]:.3f}, ratio {ratio:.2f} (target <= 0.70); per premise "
                f"engine {[round(x, 3) for x in eng[1]]} baseline {[round(x, 3) for x in base[1]]}"
            )
        for who, t in texts.items():
            print(f"{who} versions not in English: {sorted(f'{p}-{c}' for (p, c), x in t.items() if not english(x))}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", default="length,fit,localisation")
    ap.add_argument("--lengths", default="500,1000,2500,5000,10000")
    ap.add_argument("--candidates", type=int, default=2)
    ap.add_argument(
        "--limit",
        type=int,
        default=None,
        help="at most this many stories per part (for localisation: this many premises)",
    )
    ap.add_argument("--loc-cultures", type=int, default=6, help="cultures per premise in the localisation part")
    ap.add_argument("--loc-words", type=int, default=300, help="length of the localisation stories")
    ap.add_argument("--concurrency", type=int, default=3, help="stories written at the same time")
    ap.add_argument("--out", default="benchmarks/results/consistency")
    ap.add_argument("--report", action="store_true", help="only print the tables from the saved results")
    ap.add_argument(
        "--remeasure",
        action="store_true",
        help="measure the saved stories of the parts again with today's measures, then print the tables",
    )
    a = ap.parse_args()
    if a.report:
        report(Path(a.out))
    else:
        asyncio.run(run(a))
