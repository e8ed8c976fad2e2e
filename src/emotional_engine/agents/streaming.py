"""Complete sentences out of a stream of generated text pieces.

A sentence is complete when the splitter sees the start of the next one (or the stream ends with
a sentence-final mark); an unfinished last sentence is dropped, as the technical agent's trim
would. Each sentence comes with the break the model wrote before it (a space, a line break, or a
blank line: a new paragraph), so joining them rebuilds the model's own text (and a session that
replays it finds it in the runtime's cache), and with the mean log-probability of its tokens where
the backend gives them (a piece that straddles a sentence end counts for the sentence it ends).
A stream may start with a `prefix`: words the prompt already began the reply with, which belong to
its first sentence.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from emotional_engine.lm.generator import Piece
from emotional_engine.text import ends_a_sentence, sentence_breaks


@dataclass(frozen=True)
class Sentence:
    text: str  # whitespace inside collapsed to single spaces
    separator: str = " "  # the break before it: " ", "\n", or "\n\n" (a new paragraph)
    logprob: float | None = None  # the mean log-probability of its generated tokens, where known

    @property
    def new_paragraph(self) -> bool:
        return self.separator == "\n\n"

    def joined_to(self, so_far: str) -> str:
        """The separator and the sentence, to append to `so_far`."""
        return self.separator + self.text if so_far else self.text


def separator(whitespace: str) -> str:
    """The break a run of whitespace between two sentences makes."""
    lines = whitespace.count("\n")
    return "\n\n" if lines >= 2 else "\n" if lines else " "


class SentenceStream:
    def __init__(self, pieces: AsyncIterator[Piece], prefix: str = ""):
        self._pieces = pieces
        self._pending = prefix
        self._logprobs: list[float] = []  # of the pieces in `_pending`
        self._separator_next = " "  # the break before the pending sentence
        self._ready: deque[Sentence] = deque()
        self.finished = False
        self.finish_reason: str | None = None
        self.consumed: list[Sentence] = []  # what `next_sentence` has handed out
        self.prefill: dict | None = None  # the runtime's prompt and reused token counts, where it says

    async def _pull(self) -> None:
        try:
            piece = await anext(self._pieces)
        except StopAsyncIteration:
            self.finished = True
            tail = " ".join(self._pending.split())
            if tail and ends_a_sentence(tail):
                self._ready.append(Sentence(tail, self._separator_next, self._mean_logprob()))
            self._pending = ""
            return
        if piece.finish_reason:
            self.finish_reason = piece.finish_reason
        if piece.prefill is not None:
            self.prefill = piece.prefill
        self._pending += piece.text
        if piece.logprob is not None:
            self._logprobs.append(piece.logprob)
        breaks = sentence_breaks(self._pending)
        start = 0
        for b in breaks:
            text = " ".join(self._pending[start : b.start()].split())
            if text:
                self._ready.append(Sentence(text, self._separator_next, self._mean_logprob()))
            self._separator_next = separator(b.group())
            start = b.end()
        self._pending = self._pending[start:]

    def _mean_logprob(self) -> float | None:
        """The mean over the pieces since the last sentence, which are then spent."""
        lps, self._logprobs = self._logprobs, []
        return sum(lps) / len(lps) if lps else None

    async def fill(self, n: int) -> None:
        """Read until `n` complete sentences wait (or the stream ends)."""
        while len(self._ready) < n and not self.finished:
            await self._pull()

    def buffered_text(self) -> str:
        return " ".join(s.text for s in self._ready)

    def buffered_logprob(self) -> float | None:
        """The mean of the buffered sentences' log-probabilities (None where none is known)."""
        lps = [s.logprob for s in self._ready if s.logprob is not None]
        return sum(lps) / len(lps) if lps else None

    async def next_sentence(self) -> Sentence | None:
        while not self._ready and not self.finished:
            await self._pull()
        if not self._ready:
            return None
        s = self._ready.popleft()
        self.consumed.append(s)
        return s

    async def aclose(self) -> None:
        """Stop reading; the runtime cancels the request."""
        close = getattr(self._pieces, "aclose", None)
        if close is not None:
            await close()
