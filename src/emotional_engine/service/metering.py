"""Tokens and time to first token per HTTP request, counted where the language model is called.

Each language model's generator is shared by all requests; a context variable set by the route
says which request a call belongs to (asyncio tasks inherit it), so the wrapper can count tokens
for that key's rate limit and time the first token for the metrics.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field

from emotional_engine.lm.generator import Generator, ModelInfo
from emotional_engine.service.errors import ModelFailedError
from emotional_engine.service.metrics import Metrics


@dataclass
class Usage:
    kind: str  # beat | story
    started: float = field(default_factory=time.perf_counter)
    tokens: int = 0
    ttft_s: float | None = None
    reservation: object | None = None  # the tokens held for it up front (ratelimit.Reservation)


current_usage: ContextVar[Usage | None] = ContextVar("ee_usage", default=None)


def begin(kind: str) -> Usage:
    u = Usage(kind)
    current_usage.set(u)
    return u


class MeteredGenerator:
    """A `Generator` that counts into the current request's `Usage` and the metrics."""

    def __init__(self, inner: Generator, metrics: Metrics):
        self.inner, self.metrics = inner, metrics

    # the rest of the protocol is the inner generator's
    @property
    def info(self) -> ModelInfo:
        return self.inner.info

    @property
    def supports_logits_processors(self) -> bool:
        return self.inner.supports_logits_processors

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def vocabulary(self) -> list[str] | None:
        return self.inner.vocabulary()

    def emotion_context(self, emotion: str) -> list[float] | None:
        return self.inner.emotion_context(emotion)

    def _first_token(self, u: Usage | None) -> None:
        if u is not None and u.ttft_s is None:
            u.ttft_s = time.perf_counter() - u.started
            self.metrics.ttft.labels(u.kind).observe(u.ttft_s)

    def _count(self, u: Usage | None, n: int) -> None:
        self.metrics.tokens.inc(n)
        if u is not None:
            u.tokens += n

    async def stream(self, prompt, params, *, kv_key=None, processors=()):
        # read once, as the stream starts: a stream closed later (a losing candidate, a client gone)
        # may be finalised in another context
        u = current_usage.get()
        n = 0
        try:
            async for piece in _model_errors(self.inner.stream(prompt, params, kv_key=kv_key, processors=processors)):
                if piece.text:
                    if n == 0:
                        self._first_token(u)
                    n += 1
                if piece.finish_reason is not None and piece.usage:
                    n = piece.usage.get("completion_tokens", n)
                yield piece
        finally:  # a client that went away still pays for what was generated
            self._count(u, n)

    async def complete(self, prompt, params, *, kv_key=None, processors=()):
        u = current_usage.get()
        try:
            done = await self.inner.complete(prompt, params, kv_key=kv_key, processors=processors)
        except Exception as e:
            raise ModelFailedError(str(e)) from e
        self._first_token(u)  # the whole completion came back: its first token came no later
        self._count(u, done.completion_tokens)
        return done

    async def aclose(self) -> None:
        await self.inner.aclose()


async def _model_errors(pieces):
    """The pieces of a stream, its failures raised as ModelFailedError."""
    try:
        async for piece in pieces:
            yield piece
    except Exception as e:
        raise ModelFailedError(str(e)) from e
    finally:
        await pieces.aclose()
