"""The text the pipeline measures importance on, heals on and distils on, and its hash (recorded in
the output file's provenance).

Sources: Brown corpus fiction (the adapter's corpus, training/corpus.py: fetched once with npm into
the cache), stories the parent model writes through the engine's own prompts for CALIBRATION_PREMISES
(none of them the story-quality benchmark's held-out requests), and any text files given.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch

from emotional_engine.lm.tokenizer import BPETokenizer

CALIBRATION_PREMISES = (
    "A baker in a mountain village runs out of flour on the morning of the harvest festival.",
    "Two old friends meet again at a railway station after twenty years apart.",
    "A girl teaches her grandfather to use a phone so he can call his brother overseas.",
    "A night-shift nurse finds a stray cat in the hospital's laundry room.",
    "A fisherman's boat drifts out to sea with his daughter's kite tangled in the mast.",
    "A street musician loses his violin the day before an audition.",
    "A retired teacher receives a letter from a student she taught forty years ago.",
    "Neighbours on a rainy street share one umbrella to reach the bus stop.",
)


def brown_fiction(words: int, files: Path | None = None) -> list[str]:
    """Paragraphs of Brown fiction (eight sentences each), in reading order, `words` in all; `files`: the
    corpus's folder (default: fetched once into the cache)."""
    from emotional_engine.training.corpus import fetch_brown, fiction_sentences

    out, paragraph, total = [], [], 0
    for s in fiction_sentences(files or fetch_brown()):
        paragraph.append(s.text)
        total += len(s.text.split())
        if len(paragraph) == 8:
            out.append(" ".join(paragraph))
            paragraph = []
        if total >= words:
            break
    return out + ([" ".join(paragraph)] if paragraph else [])


def teacher_engine(model_path: Path):
    """The engine the teacher writes through: its agents and prompts, two candidates a scene."""
    from emotional_engine.config import Settings
    from emotional_engine.engine import Engine

    return Engine(Settings(model_path=model_path), candidates=2)


def teacher_stories(
    engine, count: int, words: int = 300, progress: Callable[[int, int], None] = lambda d, t: None
) -> list[str]:
    """`count` stories `engine` (teacher_engine) writes for CALIBRATION_PREMISES, in turn."""
    from emotional_engine.domain import StoryRequest

    out = []
    for i in range(count):
        premise = CALIBRATION_PREMISES[i % len(CALIBRATION_PREMISES)]
        out.append(engine.generate(StoryRequest(premise=premise, words=words, seed=1000 + i)).text)
        progress(i + 1, count)
    return out


def windows(tokenizer: BPETokenizer, texts: list[str], window: int) -> torch.Tensor:
    """The texts' tokens end to end (an end-of-text token between), cut into (n, window + 1) rows: a
    window's inputs and its next-token targets."""
    ids: list[int] = []
    sep = [min(tokenizer.eos_ids)] if tokenizer.eos_ids else []
    for t in texts:
        ids += tokenizer.encode(t) + sep
    n = len(ids) // (window + 1)
    if n == 0:
        raise ValueError(f"the calibration text is {len(ids)} tokens, less than one window of {window + 1}")
    return torch.tensor(ids[: n * (window + 1)], dtype=torch.long).view(n, window + 1)


def digest(texts: list[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        h.update(t.encode())
        h.update(b"\0")
    return h.hexdigest()
