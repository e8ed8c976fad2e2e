"""Recipe for the emotion model's training sentences, written by the embedded language model.

    python -m emotional_engine.training.emotion_data generate --minutes 14 --seed 0 --out /tmp/emotion_raw.jsonl
    python -m emotional_engine.training.emotion_data generate --minutes 10 --seed 1 --out /tmp/emotion_raw2.jsonl
    python -m emotional_engine.training.emotion_data build /tmp/emotion_raw.jsonl /tmp/emotion_raw2.jsonl \
        --out src/emotional_engine/emotion/data/train.jsonl
    python -m emotional_engine.emotion.training

`generate` has SmolLM2-135M-Instruct (the embedded model) continue numbered lists of narrative
sentences, one label per prompt (`make_fewshot`: a heading naming the feeling, with the setting, the
character, the person and the wording varied at random, then three seed sentences of that label
from the templates); `--mode chat` asks for the list as a chat instruction instead (it yields about a
tenth as many usable sentences). 16 requests run at once from threads so the runtime batches them.
`clean` splits the lists into sentences and keeps only the plausible ones (see `keep`) and adds
sentences composed from phrase lists (`templates.py`), because the model's sentences are few and
noisy. The hand-written test set in tests/data is never read here.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from emotional_engine.emotion.labels import LABELS

# How a prompt names each label: several wordings, picked at random.
DESCRIPTIONS: dict[str, list[str]] = {
    "joy": ["happy", "joyful", "delighted", "overjoyed and laughing", "cheerful and glad"],
    "trust": [
        "trusting and safe with someone they rely on",
        "grateful to a loyal friend who never lets them down",
        "confident that a friend will keep a promise",
        "safe and protected by someone they trust",
        "loyal and devoted to a companion",
    ],
    "fear": ["afraid", "terrified", "scared and trembling", "frightened of a danger", "full of dread and panic"],
    "surprise": [
        "surprised",
        "astonished by something unexpected",
        "shocked by a sudden turn of events",
        "amazed and startled",
        "stunned by an unexpected discovery",
    ],
    "sadness": ["sad", "grieving a loss", "heartbroken", "lonely and sorrowful", "in tears and full of sorrow"],
    "disgust": [
        "disgusted",
        "revolted by something foul",
        "sickened by a rotten smell",
        "repulsed by something filthy",
        "disgusted by someone's vile behaviour",
    ],
    "anger": ["angry", "furious", "full of rage", "outraged at an injustice", "annoyed and shouting"],
    "anticipation": [
        "eager for something that is about to happen",
        "waiting impatiently for tomorrow",
        "looking forward to an upcoming event",
        "expectant, counting the days until something",
        "preparing excitedly for what will come next",
    ],
    "neutral": [
        "calm and doing an ordinary everyday task",
        "describing plain facts with no emotion",
        "going through a routine without feeling anything special",
        "neutral, just stating what happens",
        "matter-of-fact about an ordinary day",
    ],
}

SETTINGS = [
    "a small fishing village",
    "a busy city office",
    "a spaceship far from Earth",
    "a medieval castle",
    "a school classroom",
    "a farm during harvest",
    "a hospital ward",
    "a desert caravan",
    "a snowy mountain cabin",
    "a crowded train station",
    "a jungle expedition",
    "a royal court in Kyoto",
    "a market in Nairobi",
    "a suburban kitchen",
    "a pirate ship at sea",
    "a university library",
    "a village in the Andes",
    "a wedding party",
    "a battlefield",
    "a haunted house",
    "a bakery at dawn",
    "a courtroom",
    "a football match",
    "an old lighthouse",
    "a refugee camp",
    "a palace in ancient Persia",
    "a quiet forest",
    "a night club",
]
CHARACTERS = [
    "an old fisherman",
    "a young girl",
    "a soldier",
    "a grandmother",
    "a detective",
    "a teacher",
    "a king",
    "a nurse",
    "a little boy",
    "a farmer",
    "a pilot",
    "a thief",
    "a princess",
    "a doctor",
    "a student",
    "a widow",
    "a merchant",
    "a robot",
    "a dog owner",
    "a sailor",
    "a mother",
    "a father",
    "a musician",
    "an orphan",
    "a shopkeeper",
    "twin brothers",
    "a lonely poet",
    "a village chief",
]
TEMPLATES = [
    "Write {n} short sentences from a story set in {setting}, in which {character} is {desc}. "
    "Write in the {person} person. Number them.",
    "List {n} different sentences from a novel that show {character} feeling {desc}. Setting: {setting}. "
    "Use the {person} person. One sentence per line, numbered.",
    "Give {n} example sentences that express the emotion of feeling {desc}. The scene: {character} in {setting}. "
    "Write in the {person} person, numbered 1 to {n}.",
    "Here is a scene in {setting}. Write {n} numbered story sentences where {character} feels {desc}. "
    "{person_cap} person narration.",
]


def make_prompt(label: str, rng: random.Random) -> str:
    person = rng.choice(["first", "third"])
    return rng.choice(TEMPLATES).format(
        n=5,
        setting=rng.choice(SETTINGS),
        character=rng.choice(CHARACTERS),
        desc=rng.choice(DESCRIPTIONS[label]),
        person=person,
        person_cap=person.capitalize(),
    )


FEWSHOT_HEADS = [
    "Sentences from stories in which a character feels {desc}:",
    "Lines from novels, each showing someone who is {desc}:",
    "Example sentences (fiction, {person} person) expressing the feeling of being {desc}:",
    "From a book of short stories set in {setting}. Sentences where {character} is {desc}:",
]


def make_fewshot(label: str, rng: random.Random, seeds: dict[str, list[str]]) -> str:
    """A raw-text list for the model to continue: a heading and three seed sentences of the label
    (drawn from the template sentences), then "4." -- the small model continues lists far more
    faithfully than it follows chat instructions."""
    head = rng.choice(FEWSHOT_HEADS).format(
        desc=rng.choice(DESCRIPTIONS[label]),
        person=rng.choice(["first", "third"]),
        setting=rng.choice(SETTINGS),
        character=rng.choice(CHARACTERS),
    )
    ex = rng.sample(seeds[label], 3)
    return head + "\n" + "".join(f"{i + 1}. {s}\n" for i, s in enumerate(ex)) + "4."


def generate(
    out: Path, minutes: float, seed: int = 0, threads: int = 16, max_tokens: int = 110, mode: str = "fewshot"
) -> int:
    from emotional_engine.emotion.templates import compose
    from emotional_engine.lm.builtin import BuiltinGenerator
    from emotional_engine.lm.sampling import SamplingParams

    seeds: dict[str, list[str]] = {k: [] for k in LABELS}
    for r in compose(60, seed=seed + 7):
        seeds[r["label"]].append(r["text"])
    gen = BuiltinGenerator.load(max_batch=threads)
    rng = random.Random(seed)
    lock = threading.Lock()
    deadline = time.monotonic() + minutes * 60
    counter = {"i": 0}
    out.parent.mkdir(parents=True, exist_ok=True)
    f = out.open("a")

    def worker(wid: int) -> None:
        while time.monotonic() < deadline:
            with lock:
                i = counter["i"]
                counter["i"] += 1
                label = LABELS[i % len(LABELS)]
                prompt = make_fewshot(label, rng, seeds) if mode == "fewshot" else make_prompt(label, rng)
                s = rng.randrange(2**31)
            msgs = prompt if mode == "fewshot" else [{"role": "user", "content": prompt}]
            c = asyncio.run(
                gen.complete(
                    msgs,
                    SamplingParams(
                        max_tokens=max_tokens,
                        temperature=0.8,
                        top_p=0.95,
                        repetition_penalty=1.1,
                        seed=s,
                        stop=["\n\n"],
                    ),
                )
            )
            with lock:
                text = "4." + c.text if mode == "fewshot" else c.text
                f.write(json.dumps({"label": label, "mode": mode, "prompt": prompt, "seed": s, "text": text}) + "\n")
                f.flush()

    t0 = time.monotonic()
    with ThreadPoolExecutor(threads) as ex:
        list(ex.map(worker, range(threads)))
    f.close()
    print(f"{counter['i']} prompts in {time.monotonic() - t0:.0f}s -> {out}")
    return counter["i"]


# ---------------------------------------------------------------- cleaning

# Labels whose sentences must read clearly positive (VADER compound > 0) or negative (< 0);
# the others are not checked for sign.
POSITIVE = {"joy", "trust"}
NEGATIVE = {"fear", "sadness", "disgust", "anger"}
META = re.compile(
    r"\b(sentence|sentences|emotion|example|narrat|first person|third person|prompt|here (is|are)|"
    r"as an ai|i cannot|i can't help|story set|the scene|numbered|setting:|person narration)\b",
    re.I,
)
UNSUITABLE = re.compile(r"\b(sex\w*|rape\w*|naked|porn\w*|nude)\b", re.I)  # not for a children's story engine
LIST_ITEM = re.compile(r"^\s*(?:\d+[.)]|[-*•])\s*(.+)$")


def split_items(text: str) -> list[str]:
    items = []
    for line in text.splitlines():
        m = LIST_ITEM.match(line)
        if m:
            items.append(m.group(1).strip().strip('"“”').strip())
    return items


def keep(text: str, label: str, compound: float) -> bool:
    words = text.split()
    if not 5 <= len(words) <= 40:
        return False
    if (
        META.search(text)
        or UNSUITABLE.search(text)
        or ":" in text[:25]
        or not text[0].isalpha()
        or text[-1] not in ".!?\"'”"
    ):
        return False
    if label in POSITIVE and compound <= 0.05:
        return False
    if label in NEGATIVE and compound >= -0.05:
        return False
    if label == "neutral" and abs(compound) > 0.3:
        return False
    return True


def template_rows(per_label: int, seed: int = 0) -> list[dict[str, str]]:
    from emotional_engine.emotion.templates import compose, compose_more

    return compose(per_label, seed=seed + 1) + compose_more(per_label * 2 // 3, seed=seed + 2)


def clean(
    raw: Path | list[Path],
    out: Path,
    per_label_cap: int = 500,
    seed: int = 0,
    templates_per_label: int = 150,
    teacher: Path | None = None,
    top_k: int = 2,
) -> dict[str, int]:
    """Model sentences that pass `keep` (and, with a teacher head, whose label is among the teacher's
    top_k), deduplicated, at most per_label_cap per label; plus the template sentences."""
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    vader = SentimentIntensityAnalyzer()
    templ = template_rows(templates_per_label, seed) if templates_per_label else []
    norm = lambda t: re.sub(r"[^a-z]+", " ", t.lower()).strip()  # noqa: E731
    seen: set[str] = {norm(r["text"]) for r in templ}  # the model often copies its few-shot examples
    cand: list[tuple[str, str]] = []
    raws = [raw] if isinstance(raw, (str, Path)) else list(raw)
    lines = [line for r in raws for line in Path(r).open() if line.strip()]
    for line in lines:
        rec = json.loads(line)
        for s in split_items(rec["text"]):
            key = norm(s)
            if key in seen:
                continue
            if keep(s, rec["label"], vader.polarity_scores(s)["compound"]):
                seen.add(key)
                cand.append((s, rec["label"]))
    if teacher is not None and cand:
        from emotional_engine.emotion.model import EmotionModel

        p, _ = EmotionModel.load(teacher).probabilities([s for s, _ in cand])
        top = np.argsort(-p, axis=1)[:, :top_k]
        cand = [(s, lab) for (s, lab), t in zip(cand, top) if LABELS.index(lab) in t]
    by_label: dict[str, list[str]] = {k: [] for k in LABELS}
    for s, lab in cand:
        by_label[lab].append(s)
    rng = random.Random(seed)
    rows = []
    for label, xs in by_label.items():
        rng.shuffle(xs)
        rows += [{"text": t, "label": label, "source": "lm"} for t in xs[:per_label_cap]]
    rows += templ
    rng.shuffle(rows)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    counts = {k: min(len(v), per_label_cap) for k, v in by_label.items()}
    print("model sentences kept per label:", json.dumps(counts), f"+ {len(templ)} template sentences ->", out)
    return counts


def build(raws: list[Path], out: Path, workdir: Path = Path("/tmp")) -> dict[str, int]:
    """Template sentences alone -> a teacher head; then the model's sentences filtered by `keep` and by
    the teacher (label among its top 2) plus the template sentences -> `out`."""
    from emotional_engine.emotion.training import train

    templ = workdir / "emotion_templates_only.jsonl"
    teacher = workdir / "emotion_teacher.npz"
    clean(raws, templ, per_label_cap=0)
    train(templ, teacher)
    return clean(raws, out, teacher=teacher)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m emotional_engine.training.emotion_data")
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--minutes", type=float, default=12)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--threads", type=int, default=16)
    g.add_argument("--mode", choices=["fewshot", "chat"], default="fewshot")
    c = sub.add_parser("clean")
    c.add_argument("raw", type=Path, nargs="+")
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--cap", type=int, default=500)
    c.add_argument(
        "--templates",
        type=int,
        default=150,
        help="subject-phrase template sentences per label (plus 2/3 as many scene/dialogue ones; 0: none)",
    )
    c.add_argument("--teacher", type=Path, default=None, help="head (.npz) that must rank the label in its top 2")
    c.add_argument("--lm-cap", type=int, default=None, help="alias of --cap")
    b = sub.add_parser("build", help="clean + teacher + clean again: the whole recipe after `generate`")
    b.add_argument("raw", type=Path, nargs="+")
    b.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)
    if a.cmd == "build":
        build(a.raw, a.out)
    elif a.cmd == "generate":
        generate(a.out, a.minutes, a.seed, a.threads, mode=a.mode)
    else:
        clean(a.raw, a.out, a.cap if a.lm_cap is None else a.lm_cap, templates_per_label=a.templates, teacher=a.teacher)


if __name__ == "__main__":
    main()
