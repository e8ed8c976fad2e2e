"""Logit steering towards a target emotion: the emotion model's reading of each vocabulary word,
turned into a bias on the language model's next-token logits.

`TokenAffect` scores every word-start token of a vocabulary (a space followed by 3+ letters in a
byte-level BPE, e.g. "Ġgrief") with the emotion model, as if each word were a sentence: nine
emotion probabilities and a valence. This is the emotion model's own judgement of single words,
not a hand-written lexicon, and measurement still happens on whole passages. For a target
(emotion e, valence v) the bias of a word is

    strength * (EMOTION_GAIN * max(0, log(p_w[e] / mean_p[e])) + VALENCE_GAIN * v * valence_w)

clipped to [-MAX_BIAS, MAX_BIAS]: words typical of the emotion gain, words of the opposite
valence lose. Only the first token of a word is biased; the model finishes words on its own.

The table depends on the tokenizer and the emotion head; it is computed once per pair (about a
minute on two cores) and cached under the cache directory, keyed by both. The embedded model's
table ships in `emotion/data/` (rebuilt by `python -m emotional_engine.training.steering_table`).
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from emotional_engine.emotion.labels import LABELS

log = logging.getLogger(__name__)

EMOTION_GAIN = 0.5
VALENCE_GAIN = 1.0
MAX_BIAS = 4.0
_WORD_START = re.compile(r"Ġ([A-Za-z]{3,})")  # byte-level BPE marks a leading space with Ġ


@dataclass(frozen=True)
class TokenAffect:
    vocab_size: int
    ids: np.ndarray  # (M,) token ids of scored word-start tokens
    probs: np.ndarray  # (M, 9) emotion probabilities, LABELS order
    valence: np.ndarray  # (M,)

    @classmethod
    def build(cls, token_texts: list[str], model, batch: int = 2048) -> TokenAffect:
        pairs = [(i, m.group(1)) for i, t in enumerate(token_texts) if (m := _WORD_START.fullmatch(t))]
        ids = np.array([i for i, _ in pairs], dtype=np.int64)
        words = [w for _, w in pairs]
        probs, valence = [], []
        for a in range(0, len(words), batch):
            scores = model.score(words[a : a + batch])
            probs.append(np.array([[s.scores[k] for k in LABELS] for s in scores], dtype=np.float32))
            valence.append(np.array([s.valence for s in scores], dtype=np.float32))
        return cls(
            len(token_texts),
            ids,
            np.concatenate(probs) if probs else np.zeros((0, len(LABELS)), np.float32),
            np.concatenate(valence) if valence else np.zeros(0, np.float32),
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez_compressed(
            tmp,
            vocab_size=self.vocab_size,
            ids=self.ids.astype(np.int32),
            probs=self.probs.astype(np.float16),
            valence=self.valence.astype(np.float16),
        )
        tmp.replace(path)

    @classmethod
    def load(cls, path: Path) -> TokenAffect:
        z = np.load(path)
        return cls(
            int(z["vocab_size"]),
            z["ids"].astype(np.int64),
            z["probs"].astype(np.float32),
            z["valence"].astype(np.float32),
        )

    def bias(self, emotion: str, valence: float, strength: float) -> torch.Tensor:
        """(vocab_size,) additive logit bias towards `emotion` and `valence`."""
        out = torch.zeros(self.vocab_size)
        if strength == 0.0 or len(self.ids) == 0:
            return out
        e = LABELS.index(emotion)
        lift = np.maximum(0.0, np.log(self.probs[:, e] / max(float(self.probs[:, e].mean()), 1e-9) + 1e-9))
        b = strength * (EMOTION_GAIN * lift + VALENCE_GAIN * valence * self.valence)
        out[torch.from_numpy(self.ids)] = torch.from_numpy(np.clip(b, -MAX_BIAS, MAX_BIAS).astype(np.float32))
        return out


class LogitBias:
    """A LogitsProcessor adding a fixed bias vector; cheap enough to run on every token."""

    def __init__(self, bias: torch.Tensor):
        self.bias = bias

    def __call__(self, ids: list[int], logits: torch.Tensor) -> torch.Tensor:
        return logits + self.bias


def table_key(token_texts: list[str], head_path: Path) -> str:
    h = hashlib.sha256()
    h.update("\n".join(token_texts).encode("utf-8", "surrogatepass"))
    h.update(Path(head_path).read_bytes())
    return h.hexdigest()[:24]


SHIPPED_DIR = Path(__file__).parent / "data"  # the embedded model's table ships here


def load_or_build(token_texts: list[str], model, head_path: Path, cache_dir: Path) -> TokenAffect:
    name = f"token-affect-{table_key(token_texts, head_path)}.npz"
    for path in (SHIPPED_DIR / name, Path(cache_dir) / name):
        if path.exists():
            return TokenAffect.load(path)
    path = Path(cache_dir) / name
    log.info("scoring %d vocabulary tokens with the emotion model for logit steering (once)", len(token_texts))
    table = TokenAffect.build(token_texts, model)
    table.save(path)
    return table
