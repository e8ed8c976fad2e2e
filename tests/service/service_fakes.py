"""Fakes for the service tests: a streaming generator, an emotion scorer, SSE parsing, a free port."""

from __future__ import annotations

import asyncio
import re
import socket
from types import SimpleNamespace

from emotional_engine.domain import EMOTIONS
from emotional_engine.emotion.model import EmotionModel
from emotional_engine.lm.generator import Completion, ModelInfo, Piece
from emotional_engine.text import estimate_tokens

MOODS = ["joy", "fear", "sadness", "anticipation"]
VALENCE = {"joy": 0.8, "fear": -0.6, "sadness": -0.8, "anticipation": 0.3}


class FakeGenerator:
    """Writes a mood chosen by the seed; streams in small pieces, `delay` seconds apart."""

    info = ModelInfo("fake", "fake-model", sha256="f" * 64, weight_format="fp32")
    supports_logits_processors = False

    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.calls = 0
        self.streams = 0  # scene candidates and beats (calls also counts summaries and rewrites)
        self.pieces = 0

    def count_tokens(self, text):
        return estimate_tokens(text)

    def vocabulary(self):
        return None

    def emotion_context(self, emotion):
        return None

    def _text(self, params) -> str:
        mood = MOODS[(params.seed or 0) % 4]
        return (f"The harbour woke in {mood}. Everyone felt {mood} as the boats went out. "
                f"Mira laughed at the gulls in {mood}. It was a {mood} morning")

    async def stream(self, prompt, params, *, session_id=None, processors=()):
        self.calls += 1
        self.streams += 1
        text = self._text(params)
        whole, fragment = text.rsplit(". ", 1)
        pieces = [whole[i:i + 9] for i in range(0, len(whole), 9)] + [". "]
        asked = re.search(r"about (\d+) (?:more )?words", prompt[-1]["content"])
        if asked:  # a scene: over half the words asked for (a shorter one is written on), in one more piece
            mood = MOODS[(params.seed or 0) % 4]
            pieces.append(f"Everyone felt {mood} as the boats went out. " * (int(asked.group(1)) // 16 + 1))
        for piece in pieces + [fragment]:
            await asyncio.sleep(self.delay)
            self.pieces += 1
            yield Piece(piece, token_id=1)
        yield Piece("", finish_reason="length", usage={"completion_tokens": len(text) // 9 + 1})

    async def complete(self, prompt, params, *, session_id=None, processors=()):
        self.calls += 1
        await asyncio.sleep(self.delay)
        self.pieces += 1
        return Completion(text=self._text(params), finish_reason="length", completion_tokens=20)

    async def aclose(self):
        pass


class FakeEmotion:
    analyze = EmotionModel.analyze  # the real windowing over the fake scorer

    def __init__(self):
        self.embedder = SimpleNamespace(encode=self._encode)

    def score_passages(self, texts):
        out = []
        for t in texts:
            mood = next((m for m in MOODS if m in t), "joy")
            scores = {e: (0.9 if e == mood else 0.1 / 8) for e in EMOTIONS}
            out.append(SimpleNamespace(valence=VALENCE[mood], arousal=0.1, emotion=mood, scores=scores))
        return out

    @staticmethod
    def _encode(texts, **kw):
        import numpy as np

        return np.ones((len(texts), 8)) / np.sqrt(8)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_sse(text: str) -> list[tuple[str, str]]:
    """(event, data) pairs of an SSE body."""
    events, kind = [], None
    for line in text.splitlines():
        if line.startswith("event:"):
            kind = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            events.append((kind, line.split(":", 1)[1].strip()))
    return events
