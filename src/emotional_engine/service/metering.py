"""Tokens and time to first token per HTTP request, counted where the language model is called.

The Engine shares one generator among all requests; a context variable set by the route says which
request a call belongs to (asyncio tasks inherit it), so the wrapper can count tokens for that
key's rate limit and time the first token for the metrics.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field

from emotional_engine.service.metrics import Metrics


@dataclass
class Usage:
    kind: str  # beat | story
    started: float = field(default_factory=time.perf_counter)
    tokens: int = 0
    ttft_s: float | None = None


current_usage: ContextVar[Usage | None] = ContextVar("ee_usage", default=None)


def begin(kind: str) -> Usage:
    u = Usage(kind)
    current_usage.set(u)
    return u


class MeteredGenerator:
    """A `Generator` that counts into the current request's `Usage` and the metrics."""

    def __init__(self, inner, metrics: Metrics):
        self.inner, self.metrics = inner, metrics

    @property
    def info(self):
        return self.inner.info

    @property
    def supports_logits_processors(self):
        return self.inner.supports_logits_processors

    def _first_token(self) -> None:
        u = current_usage.get()
        if u is not None and u.ttft_s is None:
            u.ttft_s = time.perf_counter() - u.started
            self.metrics.ttft.labels(u.kind).observe(u.ttft_s)

    def _count(self, n: int) -> None:
        self.metrics.tokens.inc(n)
        u = current_usage.get()
        if u is not None:
            u.tokens += n

    async def stream(self, prompt, params, *, session_id=None, processors=()):
        n = 0
        try:
            async for piece in self.inner.stream(prompt, params, session_id=session_id, processors=processors):
                if piece.text:
                    if n == 0:
                        self._first_token()
                    n += 1
                if piece.finish_reason is not None and piece.usage:
                    n = piece.usage.get("completion_tokens", n)
                yield piece
        finally:  # a client that went away still pays for what was generated
            self._count(n)

    async def complete(self, prompt, params, *, session_id=None, processors=()):
        done = await self.inner.complete(prompt, params, session_id=session_id, processors=processors)
        self._first_token()  # the whole completion came back: its first token came no later
        self._count(done.completion_tokens)
        return done

    async def aclose(self) -> None:
        await self.inner.aclose()
