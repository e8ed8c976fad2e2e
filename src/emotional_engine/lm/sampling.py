"""Sampling settings and the per-sequence sampler.

Each sequence owns its sampler and its torch.Generator, so its draws never depend on batch mates.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch
from pydantic import BaseModel, Field, field_validator, model_validator


class LogitsProcessor(Protocol):
    """Called once per generated token with the ids so far (prompt + output) and the raw logits
    (vocab,); returns logits to sample from. Emotion steering plugs in here."""

    def __call__(self, ids: list[int], logits: torch.Tensor) -> torch.Tensor: ...


def bind_processors(processors, tokenizer) -> list[LogitsProcessor]:
    """`processors` ready to run over `tokenizer`'s ids. A processor that needs the runtime's own
    tokenizer (constrained decoding: `constrained.Regex`) has `bind(tokenizer) -> LogitsProcessor`
    and is bound here by whichever generator applies it; the rest pass as they are."""
    return [p.bind(tokenizer) if hasattr(p, "bind") else p for p in processors]


class SamplingParams(BaseModel):
    max_tokens: int = Field(256, ge=1, le=131072)
    temperature: float = Field(0.8, ge=0.0, le=10.0, description="0 means greedy")
    top_k: int = Field(0, ge=0, description="0 means off")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    min_p: float = Field(0.0, ge=0.0, lt=1.0)
    repetition_penalty: float = Field(1.0, gt=0.0, le=10.0, description="CTRL-style, over prompt and output")
    presence_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="OpenAI-style, over output")
    frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0, description="OpenAI-style, over output")
    stop: list[str] = Field(default_factory=list, max_length=16)
    seed: int | None = None
    ignore_eos: bool = False
    emotion_context: list[float] | None = Field(
        None,
        min_length=11,
        max_length=11,
        description="emotion-attention adapter input: nine emotion scores, valence, arousal (None: base model)",
    )
    emotion_schedule: list[list[float]] | None = Field(
        None,
        min_length=1,
        max_length=512,
        description="one adapter input per sentence instead of one per sequence: the k-th sentence's tokens "
        "(and the prompt, with the first) use entry k; past the last entry the last one stays",
    )

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, v: list[str]) -> list[str]:
        if any(s == "" for s in v):
            raise ValueError("stop strings must not be empty")
        return v

    @field_validator("emotion_schedule")
    @classmethod
    def _eleven_per_sentence(cls, v: list[list[float]] | None) -> list[list[float]] | None:
        if v is not None and any(len(c) != 11 for c in v):
            raise ValueError("each emotion_schedule entry must have 11 values, like emotion_context")
        return v

    @model_validator(mode="after")
    def _one_kind_of_context(self) -> SamplingParams:
        if self.emotion_context is not None and self.emotion_schedule is not None:
            raise ValueError("give emotion_context or emotion_schedule, not both")
        return self


class Sampler:
    def __init__(self, params: SamplingParams, processors: list[LogitsProcessor] | tuple = ()):
        self.p = params
        self.processors = list(processors)
        self.gen = torch.Generator()
        if params.seed is not None:
            self.gen.manual_seed(params.seed)
        else:
            self.gen.seed()
        self._counts: dict[int, int] = {}  # output token -> occurrences
        # of the last token drawn, under the distribution it was drawn from: tempered and truncated
        # when sampling; when greedy, the untempered softmax of the processed logits
        self.logprob: float | None = None

    def __call__(self, logits: torch.Tensor, prompt_ids: list[int], out_ids: list[int]) -> int:
        """logits: (vocab,) for one sequence -> the next token id."""
        p = self.p
        logits = logits.float()
        if self.processors:
            ids = prompt_ids + out_ids
            for proc in self.processors:
                logits = proc(ids, logits)
        if p.repetition_penalty != 1.0 and (prompt_ids or out_ids):
            seen = torch.tensor(sorted(set(prompt_ids) | set(out_ids)), dtype=torch.long)
            vals = logits[seen]
            logits = logits.clone()
            logits[seen] = torch.where(vals > 0, vals / p.repetition_penalty, vals * p.repetition_penalty)
        if (p.presence_penalty or p.frequency_penalty) and self._counts:
            idx = torch.tensor(list(self._counts), dtype=torch.long)
            cnt = torch.tensor(list(self._counts.values()), dtype=torch.float32)
            logits = logits.clone()
            logits[idx] -= p.presence_penalty + p.frequency_penalty * cnt
        if p.temperature == 0.0:
            tok = int(torch.argmax(logits))
            self.logprob = float(logits[tok] - torch.logsumexp(logits, dim=-1))
        else:
            tok = self._draw(logits / p.temperature)
        self._counts[tok] = self._counts.get(tok, 0) + 1
        return tok

    def _draw(self, logits: torch.Tensor) -> int:
        p = self.p
        if p.top_k and p.top_k < logits.shape[0]:
            kth = torch.topk(logits, p.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        if p.min_p > 0.0:
            probs = probs.masked_fill(probs < p.min_p * probs.max(), 0.0)
        if p.top_p < 1.0:
            sorted_p, order = torch.sort(probs, descending=True)
            cum = torch.cumsum(sorted_p, dim=-1)
            drop = cum - sorted_p >= p.top_p  # keep the smallest prefix whose mass reaches top_p
            sorted_p = sorted_p.masked_fill(drop, 0.0)
            i = int(torch.multinomial(sorted_p, 1, generator=self.gen))
            self.logprob = math.log(float(sorted_p[i]) / float(sorted_p.sum()))
            return int(order[i])
        tok = int(torch.multinomial(probs, 1, generator=self.gen))
        self.logprob = math.log(float(probs[tok]) / float(probs.sum()))
        return tok
