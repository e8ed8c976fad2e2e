"""Fakes shared by the agent, memory, session and orchestrator tests (no model needed)."""

import re
import zlib

import numpy as np
import torch

from emotional_engine.culture import load_profile
from emotional_engine.domain import Character
from emotional_engine.lm.generator import Completion, ModelInfo
from emotional_engine.lm.sampling import bind_processors
from emotional_engine.text import estimate_tokens


def bow_embed(texts, dim=256):
    """A bag-of-words embedding (unit rows): texts sharing words are similar, like a real embedder."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"[a-z]+", t.lower()):
            if len(w) > 2:
                out[i, zlib.crc32(w.encode()) % dim] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out[:, 0] += (norms[:, 0] == 0)  # an empty text gets a unit vector too
    return out / np.linalg.norm(out, axis=1, keepdims=True)


class JoyEmotion:
    """An emotion scorer that hears joy in every text."""

    def score_passages(self, texts):
        from types import SimpleNamespace

        return [SimpleNamespace(valence=0.6, arousal=0.2, emotion="joy", scores={"joy": 0.9, "neutral": 0.1})
                for _ in texts]


class ScriptedGenerator:
    """Replies with `replies` in turn (the last one repeats) and records every prompt it was sent."""

    info = ModelInfo("fake", "scripted")
    supports_logits_processors = False

    def __init__(self, *replies: str):
        self.replies = list(replies) or [""]
        self.prompts: list[list[dict]] = []

    def count_tokens(self, text):
        return estimate_tokens(text)

    def vocabulary(self):
        return None

    def emotion_context(self, emotion):
        return None

    async def complete(self, prompt, params, *, session_id=None, processors=()):
        reply = self.replies[min(len(self.prompts), len(self.replies) - 1)]
        self.prompts.append(prompt)
        return Completion(text=reply, finish_reason="stop")


class RandomLogits:
    """A model that knows nothing: random logits at every step, through whatever processors it is given
    (what constrained decoding must survive). `tok` is the tokenizer it writes with."""

    info = ModelInfo("fake", "random-logits")
    supports_logits_processors = True

    def __init__(self, tokenizer, fail_after: int | None = None):
        self.tok = tokenizer
        self.fail_after = fail_after  # stop with an error after this many tokens (None: never)
        self.prompts: list[list[dict]] = []

    def count_tokens(self, text):
        return len(self.tok.encode(text))

    def vocabulary(self):
        return [self.tok.token_text(i) for i in range(self.tok.vocab_size)]

    def emotion_context(self, emotion):
        return None

    async def complete(self, prompt, params, *, session_id=None, processors=()):
        self.prompts.append(prompt)
        processors = bind_processors(processors, self.tok)
        tok, g = self.tok, torch.Generator().manual_seed(params.seed or 0)
        prompt_ids, out = [1, 2, 3], []
        while len(out) < params.max_tokens:
            if self.fail_after is not None and len(out) == self.fail_after:
                return Completion(text=tok.decode(out), finish_reason="error")
            logits = 5 * torch.randn(tok.vocab_size, generator=g)
            for p in processors:
                logits = p(prompt_ids + out, logits)
            t = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=g))
            if t in tok.eos_ids:
                return Completion(text=tok.decode(out), finish_reason="stop")
            out.append(t)
        return Completion(text=tok.decode(out), finish_reason="length")


# a Yoruba cast with a blind protagonist and her brother, for the character checks
CAST = [
    Character(name="Amara Okafor", role="protagonist", pronouns="she/her", traits=["blind", "kind"],
              relationships={"Chidi Okafor": "brother"}, aliases=["Mama Ify"]),
    Character(name="Chidi Okafor", role="ally", pronouns="he/him", traits=["brave"]),
    Character(name="Bisi Adeyemi", role="rival", pronouns="she/her", traits=["secretive"]),
]
YO = load_profile("yo-NG")
