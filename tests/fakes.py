"""The tests' fakes, one of each kind (no model needed): a language model (`FakeGenerator`), an emotion
model (`FakeEmotion`), an embedder (`bow_embed`) and a safety classifier (`FakeSafety`). What a test
needs of them is a constructor option or a small function of one call (`write`, `reply`), not a subclass.

The LM runtime's types are imported here and only here; the other tests import them from this module."""

from __future__ import annotations

import asyncio
import inspect
import re
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch

from emotional_engine.culture import load_profile
from emotional_engine.domain import EMOTIONS, Character
from emotional_engine.emotion.model import EmotionModel, EmotionScore
from emotional_engine.lm.generator import Completion, ModelInfo, Piece
from emotional_engine.lm.sampling import SamplingParams, bind_processors
from emotional_engine.safety.model import Prediction
from emotional_engine.text import estimate_tokens

__all__ = [
    "CAST",
    "MOODS",
    "VALENCE",
    "YO",
    "Call",
    "Completion",
    "FakeEmotion",
    "FakeGenerator",
    "FakeSafety",
    "ModelInfo",
    "Piece",
    "asked_words",
    "bow_embed",
    "harbour",
    "harbour_generator",
    "random_logits",
]


# ---- the language model ----------------------------------------------------------------------


@dataclass
class Call:
    """One request a FakeGenerator was sent."""

    kind: str  # stream | complete
    index: int  # its number among the generator's requests of its kind, from 0
    prompt: str | list[dict[str, str]]
    params: SamplingParams
    kv_key: str | None
    processors: list

    @property
    def system(self) -> str:
        return self.prompt[0]["content"] if isinstance(self.prompt, list) else ""

    @property
    def user(self) -> str:
        """The last message (the raw prompt when it is text)."""
        return self.prompt[-1]["content"] if isinstance(self.prompt, list) else self.prompt


Text = str | Completion
Reply = Callable[[Call], Text | Awaitable[Text]]


class FakeGenerator:
    """A `Generator` with the protocol's whole surface that records every request (`calls`).

    `stream` writes `write`: a text, or a function of the call giving it (which may raise, or be async
    and wait); a word at a time, or `chunk` characters a piece, each piece `delay` seconds after the
    last; then an empty last piece with `finish` and the usage. `closed` counts streams stopped before
    their end. `complete` answers `replies` in turn (the last repeats), or `reply(call)`: a text or a
    whole Completion. With a `tokenizer` it counts tokens, lists its vocabulary and binds processors
    with it, as the builtin runtime does; `logits_processors` says whether it takes them (by default:
    when it has a tokenizer). `logprob(piece_text)` gives the pieces log-probabilities.
    `info.prompt_style` is "task" unless `info` says otherwise."""

    def __init__(
        self,
        *replies: str,
        write: str | Reply = "",
        reply: Reply | None = None,
        chunk: int | None = None,
        finish: str = "length",
        delay: float = 0.0,
        info: ModelInfo | None = None,
        tokenizer=None,
        logits_processors: bool | None = None,
        vocabulary: list[str] | None = None,
        emotion_contexts: dict[str, list[float]] | None = None,
        logprob: Callable[[str], float] | None = None,
    ):
        self.logprob = logprob  # a streamed piece's log-probability from its text (None: pieces carry none)
        self.replies, self.reply, self.write = list(replies) or [""], reply, write
        self.chunk, self.finish, self.delay = chunk, finish, delay
        self.info = info or ModelInfo("fake", "fake-model")
        self.tokenizer = tokenizer
        self.supports_logits_processors = tokenizer is not None if logits_processors is None else logits_processors
        self._vocabulary = vocabulary
        self._emotion_contexts = emotion_contexts or {}  # target emotion -> the adapter's conditioning vector
        self.calls: list[Call] = []
        self.closed = 0
        self.aclosed = False

    @property
    def streams(self) -> list[Call]:
        return [c for c in self.calls if c.kind == "stream"]

    @property
    def completions(self) -> list[Call]:
        return [c for c in self.calls if c.kind == "complete"]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text)) if self.tokenizer is not None else estimate_tokens(text)

    def vocabulary(self) -> list[str] | None:
        if self._vocabulary is not None or self.tokenizer is None:
            return self._vocabulary
        return [self.tokenizer.token_text(i) for i in range(self.tokenizer.vocab_size)]

    def emotion_context(self, emotion: str) -> list[float] | None:
        return self._emotion_contexts.get(emotion)

    def _record(self, kind, prompt, params, kv_key, processors) -> Call:
        if self.tokenizer is not None:  # a processor that needs the runtime's tokenizer is bound to it
            processors = bind_processors(processors, self.tokenizer)
        call = Call(kind, sum(c.kind == kind for c in self.calls), prompt, params, kv_key, list(processors))
        self.calls.append(call)
        return call

    async def stream(self, prompt, params, *, kv_key=None, processors=()):
        call = self._record("stream", prompt, params, kv_key, processors)
        text = await _resolve(self.write(call) if callable(self.write) else self.write)
        if self.chunk is None:
            pieces = [w if j == 0 else " " + w for j, w in enumerate(text.split(" "))]
        else:
            pieces = [text[i : i + self.chunk] for i in range(0, len(text), self.chunk)]
        finished = False
        try:
            for piece in pieces:
                await asyncio.sleep(self.delay)
                yield Piece(piece, token_id=1, logprob=self.logprob(piece) if self.logprob else None)
            yield Piece("", finish_reason=self.finish, usage={"completion_tokens": self.count_tokens(text)})
            finished = True
        finally:
            self.closed += not finished

    async def complete(self, prompt, params, *, kv_key=None, processors=()):
        call = self._record("complete", prompt, params, kv_key, processors)
        await asyncio.sleep(self.delay)
        out = await _resolve(self.reply(call) if self.reply else self.replies[min(call.index, len(self.replies) - 1)])
        if isinstance(out, Completion):
            return out
        return Completion(text=out, finish_reason="stop", completion_tokens=self.count_tokens(out))

    async def aclose(self) -> None:
        self.aclosed = True


async def _resolve(x):
    return await x if inspect.isawaitable(x) else x


MOODS = ["joy", "fear", "sadness", "anticipation"]  # harbour(): candidate k of a scene writes in MOODS[k % 4]
VALENCE = {"joy": 0.8, "fear": -0.6, "sadness": -0.8, "anticipation": 0.3}


def asked_words(prompt) -> int | None:
    """The words a scene prompt asks for (None for other prompts)."""
    m = re.search(r"about (\d+) (?:more )?words", prompt[-1]["content"])
    return m and int(m.group(1))


def harbour(call: Call) -> str:
    """A scene in the mood MOODS[seed % 4]: over half the words it was asked for (a shorter scene is
    written on), ending in a cut-off sentence."""
    mood = MOODS[(call.params.seed or 0) % 4]
    return (
        f"The harbour woke in {mood}."
        + f" Everyone felt {mood} as the boats went out." * ((asked_words(call.prompt) or 0) // 16 + 1)
        + f" It was a {mood} morning"
    )


def harbour_generator(delay: float = 0.0, **kw) -> FakeGenerator:
    """The service's and the benchmarks' model: harbour scenes (and summaries as the same text) in
    pieces of 32 characters, `delay` seconds apart, with the weights' hash and format filled in."""
    info = ModelInfo("fake", "fake-model", sha256="f" * 64, weight_format="fp32")
    return FakeGenerator(**{"write": harbour, "reply": harbour, "chunk": 32, "delay": delay, "info": info, **kw})


def random_logits(tokenizer, fail_after: int | None = None) -> Reply:
    """A reply from a model that knows nothing: random logits over `tokenizer`'s vocabulary at every
    step, through the call's processors (what constrained decoding must survive); with `fail_after`,
    an error after that many tokens."""

    def reply(call: Call) -> Completion:
        g = torch.Generator().manual_seed(call.params.seed or 0)
        prompt_ids, out = [1, 2, 3], []
        while len(out) < call.params.max_tokens:
            if fail_after is not None and len(out) == fail_after:
                return Completion(text=tokenizer.decode(out), finish_reason="error")
            logits = 5 * torch.randn(tokenizer.vocab_size, generator=g)
            for p in call.processors:
                logits = p(prompt_ids + out, logits)
            t = int(torch.multinomial(torch.softmax(logits, -1), 1, generator=g))
            if t in tokenizer.eos_ids:
                return Completion(text=tokenizer.decode(out), finish_reason="stop")
            out.append(t)
        return Completion(text=tokenizer.decode(out), finish_reason="length")

    return reply


# ---- the emotion model and the embedder --------------------------------------------------------


def bow_embed(texts, dim=256):
    """A bag-of-words embedding (unit rows): texts sharing words are similar, like a real embedder."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"[a-z]+", t.lower()):
            if len(w) > 2:
                out[i, zlib.crc32(w.encode()) % dim] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    out[:, 0] += norms[:, 0] == 0  # an empty text gets a unit vector too
    return out / np.linalg.norm(out, axis=1, keepdims=True)


class FakeEmotion:
    """An emotion model (`score`, `score_passages`, the real `analyze` over them, an `embedder`): a text
    feels as the first of `cues` it contains says (cue -> (emotion, valence); by default the MOODS that
    harbour() writes in), else as `otherwise`; its emotion scores 0.9, the other eight share 0.1.
    `calls` counts the scoring calls."""

    analyze = EmotionModel.analyze  # the real windowing over the fake scores

    def __init__(
        self,
        cues: dict[str, tuple[str, float]] | None = None,
        otherwise: tuple[str, float] = ("joy", VALENCE["joy"]),
        arousal: float = 0.1,
    ):
        self.cues = {m: (m, VALENCE[m]) for m in MOODS} if cues is None else cues
        self.otherwise, self.arousal = otherwise, arousal
        self.embedder = SimpleNamespace(encode=lambda texts, **kw: bow_embed(texts))
        self.calls = 0

    def score(self, texts) -> list[EmotionScore]:
        self.calls += 1
        out = []
        for t in texts:
            emotion, valence = next((v for cue, v in self.cues.items() if cue in t), self.otherwise)
            out.append(
                EmotionScore(
                    scores={e: (0.9 if e == emotion else 0.1 / 8) for e in EMOTIONS},
                    valence=valence,
                    arousal=self.arousal,
                    emotion=emotion,
                )
            )
        return out

    score_passages = score  # a passage is scored as one text


# ---- the safety classifier ---------------------------------------------------------------------


class FakeSafety:
    """A safety classifier: a text containing one of `labels` (cue -> (category, severity)) gets that
    label, any other `otherwise`, each with `probability`; `calls` keeps the batches it was given."""

    def __init__(
        self,
        labels: dict[str, tuple[str, int]] | None = None,
        otherwise: tuple[str, int] = ("safe", 0),
        probability: float = 0.9,
    ):
        self.labels, self.otherwise, self.probability = labels or {}, otherwise, probability
        self.calls: list[list[str]] = []

    def predict(self, texts) -> list[Prediction]:
        self.calls.append(list(texts))
        out = []
        for t in texts:
            category, severity = next((v for cue, v in self.labels.items() if cue in t), self.otherwise)
            out.append(Prediction(category, severity, self.probability, {}))
        return out


# ---- a cast ------------------------------------------------------------------------------------

# a Yoruba cast with a blind protagonist and her brother, for the character checks
CAST = [
    Character(
        name="Amara Okafor",
        role="protagonist",
        pronouns="she/her",
        traits=["blind", "kind"],
        relationships={"Chidi Okafor": "brother"},
        aliases=["Mama Ify"],
    ),
    Character(name="Chidi Okafor", role="ally", pronouns="he/him", traits=["brave"]),
    Character(name="Bisi Adeyemi", role="rival", pronouns="she/her", traits=["secretive"]),
]
YO = load_profile("yo-NG")
