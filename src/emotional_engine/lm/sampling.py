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
    background: bool = Field(
        False,
        description="work no reader waits on (a story memory's summary): the builtin runtime steps it only "
        "every few steps while other requests run, so it does not slow what is being read",
    )
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


TOP_CANDIDATES = 1024  # tokens the cuts are first looked for among


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
        self._seen: torch.Tensor | None = None  # ids in the prompt and output, for the repetition penalty
        self._seen_upto = 0  # output tokens already in `_seen`
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
            seen = self._seen_mask(logits.shape[0], prompt_ids, out_ids)
            penalised = torch.where(logits > 0, logits / p.repetition_penalty, logits * p.repetition_penalty)
            logits = torch.where(seen, penalised, logits)
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

    def _seen_mask(self, vocab: int, prompt_ids: list[int], out_ids: list[int]) -> torch.Tensor:
        """(vocab,) bool: the ids in the prompt and the output so far, kept from step to step (the
        prompt once, then each new output token) instead of rebuilt from a thousand ids every token."""
        if self._seen is None or self._seen_upto > len(out_ids):
            self._seen = torch.zeros(vocab, dtype=torch.bool)
            self._seen[torch.tensor(prompt_ids, dtype=torch.long)] = True
            self._seen_upto = 0
        for tok in out_ids[self._seen_upto :]:
            self._seen[tok] = True
        self._seen_upto = len(out_ids)
        return self._seen

    def _draw(self, logits: torch.Tensor) -> int:
        """Sample from the tempered distribution cut by top_k, min_p and top_p. Those cuts keep a few
        dozen tokens, so they are made among the TOP_CANDIDATES most likely (one topk, no sort of the
        vocabulary); the whole vocabulary is sorted only when a cut reaches past them."""
        p = self.p
        n = logits.shape[0]
        top_k = p.top_k if 0 < p.top_k < n else 0
        if top_k or p.top_p < 1.0 or p.min_p > 0.0:
            m = min(top_k or n, TOP_CANDIDATES)
            vals, order = torch.topk(logits, m)  # descending
            by_k = bool(top_k) and top_k <= m  # the top_k cut is exactly these candidates
            lifted = torch.exp(vals - vals[0])  # as softmax computes it, so ties with top_p fall alike
            probs = lifted / (lifted.sum() if by_k else torch.exp(logits - vals[0]).sum())
            if p.min_p > 0.0:
                probs = probs.masked_fill(probs < p.min_p * probs[0], 0.0)
            if p.top_p < 1.0:
                probs = probs.masked_fill(torch.cumsum(probs, 0) - probs >= p.top_p, 0.0)
            if by_k or probs[-1] == 0.0:  # the cut ends among the candidates: exact
                return self._pick(probs, order)
            return self._draw_sorted(logits)
        return self._pick(torch.softmax(logits, dim=-1), None)

    def _draw_sorted(self, logits: torch.Tensor) -> int:
        """The same cuts over the whole vocabulary, sorted."""
        p = self.p
        if p.top_k and p.top_k < logits.shape[0]:
            kth = torch.topk(logits, p.top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs, order = torch.sort(torch.softmax(logits, dim=-1), descending=True)
        if p.min_p > 0.0:
            probs = probs.masked_fill(probs < p.min_p * probs[0], 0.0)
        if p.top_p < 1.0:
            probs = probs.masked_fill(torch.cumsum(probs, 0) - probs >= p.top_p, 0.0)  # the smallest prefix reaching p
        return self._pick(probs, order)

    def _pick(self, weights: torch.Tensor, order: torch.Tensor | None) -> int:
        """Draw an index with probability proportional to `weights` (one uniform, inverted through the
        cumulative sum: cheaper than multinomial over the vocabulary), mapped through `order`."""
        cum = torch.cumsum(weights, 0)
        total = cum[-1]
        u = torch.rand(1, generator=self.gen) * total
        i = min(int(torch.searchsorted(cum, u, right=True)), weights.shape[0] - 1)
        while weights[i] == 0.0:  # rounding at the very top of the cumulative sum: the last token kept
            i -= 1
        self.logprob = math.log(float(weights[i]) / float(total))
        return i if order is None else int(order[i])
