"""The `Generator` protocol every layer above writes through, and the types it speaks.

Implementations, one module each: `builtin.BuiltinGenerator` (our decoder on a GGUF file),
`openai_backend.OpenAIGenerator` (any OpenAI-compatible server), `llama_cpp.LlamaCppGenerator`
(llama-cpp-python, when installed); `models.make_generator` picks one for a configured model.
Callers use only what the protocol says; nothing above lm/ reaches into a backend's internals.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from emotional_engine.lm.sampling import LogitsProcessor, SamplingParams

# raw text, or chat messages [{"role": ..., "content": ...}]; a last "assistant" message is continued:
# the reply begins with its text (builtin and llama-cpp render it so; the openai backend asks the
# server with vLLM's `continue_final_message`)
Prompt = str | list[dict[str, str]]


def begun_reply(prompt: Prompt) -> bool:
    """Whether `prompt` is chat messages whose last, an assistant message, is to be continued."""
    return not isinstance(prompt, str) and bool(prompt) and prompt[-1]["role"] == "assistant"


@dataclass
class ModelInfo:
    """What a generator runs. Which backends fill `Piece.logprob`: builtin does, openai and llama-cpp
    leave it None."""

    backend: str  # builtin | openai | llama-cpp
    name: str
    sha256: str | None = None  # of the weights file, when there is one
    context_length: int | None = None
    weight_format: str | None = None
    adapter: str | None = None  # emotion-attention adapter in use: name and file hash
    lora: str | None = None  # LoRA merged into the weights (lm/lora.py): name and file hash
    prompt_style: str = "task"  # how stories prompt it (agents/prompts.py): "continuation" or "task"
    optimized: dict | None = None  # what `emotional-engine optimize` did to make its file (optimize/pipeline.py)


@dataclass
class Piece:
    """A streamed piece of output; the last one of a request carries `finish_reason` and `usage`.

    `logprob`: the log-probability of `token_id` under the distribution it was drawn from (after
    processors and penalties; tempered and truncated when sampling, the full softmax when greedy).
    Only the builtin backend fills it; None elsewhere and on the last piece."""

    text: str
    token_id: int | None = None
    finish_reason: str | None = None  # stop | length | cancelled | error
    error: str | None = None
    usage: dict | None = None
    logprob: float | None = None
    # on a request's first piece (builtin only): its prompt's tokens and how many came from a kept cache
    prefill: dict | None = None


@dataclass
class Completion:
    text: str
    finish_reason: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    ttft_ms: float = 0.0
    total_ms: float = 0.0
    error: str | None = None
    token_ids: list[int] = field(default_factory=list)  # filled by the builtin runtime
    # the mean log-probability of the tokens written, from the pieces' `logprob` (builtin only; None
    # where the backend gives none): the fluency measure of agents/adherence.py
    mean_logprob: float | None = None

    @classmethod
    def from_pieces(cls, pieces: list[Piece]) -> Completion:
        last = pieces[-1] if pieces else None
        if last is None or last.finish_reason is None:
            raise RuntimeError("the stream ended without a finish reason")
        u = last.usage or {}
        logprobs = [p.logprob for p in pieces if p.logprob is not None]
        return cls(
            text="".join(p.text for p in pieces),
            mean_logprob=sum(logprobs) / len(logprobs) if logprobs else None,
            finish_reason=last.finish_reason,
            error=last.error,
            prompt_tokens=u.get("prompt_tokens", 0),
            completion_tokens=u.get("completion_tokens", 0),
            cached_tokens=u.get("cached_tokens", 0),
            ttft_ms=u.get("ttft_ms", 0.0),
            total_ms=u.get("total_ms", 0.0),
        )


class BackendError(RuntimeError):
    """A backend could not be reached, refused a request, or sent something unusable."""


async def complete_from_stream(pieces: AsyncIterator[Piece]) -> Completion:
    return Completion.from_pieces([p async for p in pieces])


@runtime_checkable
class Generator(Protocol):
    info: ModelInfo
    # takes LogitsProcessors in stream/complete, and binds those that need its tokenizer (constrained.Regex)
    supports_logits_processors: bool
    # stream/complete's `kv_key`: a backend that keeps KV caches keeps the request's under it, so the next
    # request with the same key prefills only what is new; one that keeps none (or caches itself) ignores it

    def count_tokens(self, text: str) -> int:
        """Exact with its own tokenizer; else `emotional_engine.text.estimate_tokens`."""
        ...

    def vocabulary(self) -> list[str] | None:
        """Token strings by id, for logit steering; None when it cannot be seen."""
        ...

    def emotion_context(self, emotion: str) -> list[float] | None:
        """The emotion adapter's conditioning vector for `emotion` (`SamplingParams.emotion_context`);
        None without an adapter or for an emotion it was not trained on."""
        ...

    def stream(
        self,
        prompt: Prompt,
        params: SamplingParams,
        *,
        kv_key: str | None = None,
        processors: Sequence[LogitsProcessor] = (),
    ) -> AsyncIterator[Piece]: ...

    async def complete(
        self,
        prompt: Prompt,
        params: SamplingParams,
        *,
        kv_key: str | None = None,
        processors: Sequence[LogitsProcessor] = (),
    ) -> Completion: ...

    async def aclose(self) -> None: ...
