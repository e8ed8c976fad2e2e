"""The `Generator` protocol every layer above writes through, and its implementations.

- `BuiltinGenerator`: our own decoder on a GGUF file (the embedded SmolLM2 by default).
- `OpenAIGenerator`: any OpenAI-compatible server (vLLM, Ollama, llama.cpp's server).
- `LlamaCppGenerator`: llama-cpp-python, only when it happens to be installed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from emotional_engine.lm.engine import Completion, LMEngine, Piece
from emotional_engine.lm.gguf import embedded_model_path, load_gguf
from emotional_engine.lm.model import Llama
from emotional_engine.lm.quant import WEIGHT_FORMATS, apply_weight_format
from emotional_engine.lm.sampling import LogitsProcessor, SamplingParams
from emotional_engine.lm.tokenizer import BPETokenizer

log = logging.getLogger(__name__)

Prompt = str | list[dict[str, str]]  # raw text, or chat messages [{"role": ..., "content": ...}]


@dataclass
class ModelInfo:
    backend: str  # builtin | openai | llama-cpp
    name: str
    sha256: str | None = None  # of the weights file, when there is one
    context_length: int | None = None
    weight_format: str | None = None


@runtime_checkable
class Generator(Protocol):
    info: ModelInfo
    supports_logits_processors: bool

    def stream(
        self,
        prompt: Prompt,
        params: SamplingParams,
        *,
        session_id: str | None = None,
        processors: Sequence[LogitsProcessor] = (),
    ) -> AsyncIterator[Piece]: ...

    async def complete(
        self,
        prompt: Prompt,
        params: SamplingParams,
        *,
        session_id: str | None = None,
        processors: Sequence[LogitsProcessor] = (),
    ) -> Completion: ...

    async def aclose(self) -> None: ...


async def complete_from_stream(pieces: AsyncIterator[Piece]) -> Completion:
    return Completion.from_pieces([p async for p in pieces])


class BuiltinGenerator:
    """Our decoder behind the continuous-batching engine."""

    supports_logits_processors = True

    def __init__(self, engine: LMEngine, info: ModelInfo):
        self.engine = engine
        self.info = info

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        weight_format: str = "int8",
        max_batch: int = 16,
        cache_budget_mb: int = 512,
        overflow: str = "truncate",
        cache_dir: Path | None = None,
    ) -> BuiltinGenerator:
        if weight_format not in WEIGHT_FORMATS:
            raise ValueError(f"weight format {weight_format!r} is unknown; choose one of {', '.join(WEIGHT_FORMATS)}")
        g, sd = load_gguf(path or embedded_model_path(), cache_dir=cache_dir)
        model = Llama(g.config)
        model.load_weights(sd)
        apply_weight_format(model, weight_format)
        engine = LMEngine(model, BPETokenizer(g.tokenizer), max_batch=max_batch,
                          cache_budget_bytes=cache_budget_mb * 2**20, overflow=overflow)
        info = ModelInfo("builtin", g.name, g.sha256, g.config.context_length, weight_format)
        return cls(engine, info)

    def stream(self, prompt, params, *, session_id=None, processors=()):
        return self.engine.stream(prompt, params, session_id=session_id, processors=processors)

    async def complete(self, prompt, params, *, session_id=None, processors=()) -> Completion:
        return await complete_from_stream(self.stream(prompt, params, session_id=session_id, processors=processors))

    async def aclose(self) -> None:
        await asyncio.to_thread(self.engine.close)
