"""A request's own state in the continuous batcher (`Request`): its prompt and sampling, the output so
far, the text held back at a possible stop string, the sentence count behind an emotion schedule, its
KV cache and its timings."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from emotional_engine.lm.generator import Piece
from emotional_engine.lm.kv_cache import KVCache
from emotional_engine.lm.sampling import Sampler, SamplingParams
from emotional_engine.lm.tokenizer import StreamDecoder

_MARKS = ".!?…"  # sentence-final marks, for `SamplingParams.emotion_schedule`
_SENTENCE_MARKS = re.compile(f"[{_MARKS}]+")


@dataclass
class Request:
    """One request in the batcher: its prompt, sampling, output so far, KV cache and timings."""

    id: int
    prompt_ids: list[int]
    params: SamplingParams
    sampler: Sampler
    emit: Callable[[Piece], None]
    kv_key: str | None
    decoder: StreamDecoder
    cache: KVCache | None = None
    feed: list[int] = field(default_factory=list)  # tokens to push through the model next
    out_ids: list[int] = field(default_factory=list)
    held: str = ""  # text held back because it may be the start of a stop string
    cached_tokens: int = 0
    announced: bool = False  # the first piece, which carries the prefill figures, has gone out
    cancelled: bool = False
    t_submit: float = field(default_factory=time.perf_counter)
    t_first: float | None = None
    sentences: int = 0  # sentence ends generated so far: the index into `params.emotion_schedule`
    after_mark: bool = False  # the output so far ends with a sentence-final mark

    @property
    def emotion_context(self) -> list[float] | None:
        """The adapter input for the next tokens fed: this sentence's entry of the schedule, else the fixed one."""
        schedule = self.params.emotion_schedule
        return schedule[min(self.sentences, len(schedule) - 1)] if schedule else self.params.emotion_context

    def count_sentence_ends(self, text: str) -> None:
        """Advance past each run of sentence-final marks in newly decoded `text` (a run split across
        tokens counts once). Approximate like any mark-based split: "Mr." and "3.5" count too."""
        if not text:
            return
        runs = len(_SENTENCE_MARKS.findall(text))
        self.sentences += runs - (self.after_mark and text[0] in _MARKS)
        self.after_mark = text[-1] in _MARKS

    def cut_at_stop(self, text: str) -> tuple[str, bool]:
        """`text` up to the first stop string in it, and whether there was one."""
        hit = min((i for i in (text.find(s) for s in self.params.stop) if i >= 0), default=-1)
        return (text[:hit], True) if hit >= 0 else (text, False)

    def hold_back(self, text: str) -> str:
        """Keep back the end of `text` that may be the start of a stop string (in `held`); the rest may go out."""
        keep = stop_prefix_len(text, self.params.stop)
        self.held = text[len(text) - keep :] if keep else ""
        return text[: len(text) - keep]

    def usage(self, now: float) -> dict:
        """The final piece's usage: token counts and timings in milliseconds."""
        return {
            "prompt_tokens": len(self.prompt_ids),
            "completion_tokens": len(self.out_ids),
            "cached_tokens": self.cached_tokens,
            "ttft_ms": 1000 * ((self.t_first or now) - self.t_submit),
            "total_ms": 1000 * (now - self.t_submit),
        }


def stop_prefix_len(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of a stop string."""
    best = 0
    for s in stops:
        for k in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:k]):
                best = k
                break
    return best
