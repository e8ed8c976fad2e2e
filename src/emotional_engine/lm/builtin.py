"""`BuiltinGenerator`: our own decoder on a GGUF file (the embedded SmolLM2 by default), behind the
continuous batcher, with the emotion-attention adapter when there is one."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from emotional_engine.lm import emotion_attention as ea
from emotional_engine.lm import kernels, lora
from emotional_engine.lm.batcher import ContinuousBatcher
from emotional_engine.lm.generator import Completion, ModelInfo, complete_from_stream
from emotional_engine.lm.gguf import embedded_model_path, load_gguf, native_blocks
from emotional_engine.lm.model import Llama
from emotional_engine.lm.quant import WEIGHT_FORMATS, apply_weight_format
from emotional_engine.lm.sampling import bind_processors
from emotional_engine.lm.tokenizer import BPETokenizer
from emotional_engine.threads import run_in_passing_thread

log = logging.getLogger(__name__)


class BuiltinGenerator:
    """Our decoder behind the continuous batcher: the whole `Generator` protocol, exact token counts
    with its own tokenizer, `Piece.logprob` filled."""

    supports_logits_processors = True

    def __init__(
        self, batcher: ContinuousBatcher, info: ModelInfo, emotion_contexts: dict[str, list[float]] | None = None
    ):
        self.batcher = batcher
        self.info = info
        # target emotion -> the adapter's conditioning vector (SamplingParams.emotion_context); empty
        # without an adapter. Its keys are the emotions the adapter knows (the CLI lists them).
        self.emotion_contexts = emotion_contexts or {}

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        weight_format: str = "native",
        max_batch: int = 16,
        cache_budget_mb: int = 512,
        overflow: str = "truncate",
        cache_dir: Path | None = None,
        emotion_adapter: bool | Path = True,
        lora_path: Path | None = None,
    ) -> BuiltinGenerator:
        """`emotion_adapter`: True loads the shipped adapter when it was trained on this model's
        weights, a path loads that file, False runs the base model. `lora_path`: a LoRA (lm/lora.py)
        merged into the weights first; it must have been trained on them."""
        if weight_format not in WEIGHT_FORMATS:
            raise ValueError(f"weight format {weight_format!r} is unknown; choose one of {', '.join(WEIGHT_FORMATS)}")

        def build():
            g, sd = load_gguf(path or embedded_model_path(), cache_dir=cache_dir)
            merged = lora_path and lora.merge(sd := dict(sd), lora_path, g.sha256)
            # a merged LoRA changed the weights: the file's blocks no longer hold them
            native = None
            if weight_format == "native" and not merged:
                native = native_blocks(g.path, g.config, kernels.GGML_TYPES)
            model = apply_weight_format(Llama.from_state_dict(g.config, sd), weight_format, native)
            return g, model, merged

        g, model, merged = run_in_passing_thread(build)
        adapter = _load_emotion_adapter(model, g.sha256, emotion_adapter)
        batcher = ContinuousBatcher(
            model,
            BPETokenizer(g.tokenizer),
            max_batch=max_batch,
            cache_budget_bytes=cache_budget_mb * 2**20,
            overflow=overflow,
        )
        info = ModelInfo(
            "builtin",
            g.name,
            g.sha256,
            g.config.context_length,
            model.weight_format,
            adapter=adapter and f"{adapter[0].name}@{adapter[1]}",
            prompt_style="continuation",
            lora=merged and f"{merged.name}@{ea.file_id(lora_path)}",
            optimized=g.optimized,
        )
        return cls(batcher, info, adapter[0].emotion_contexts if adapter else None)

    def count_tokens(self, text: str) -> int:
        return len(self.batcher.tok.encode(text))

    def vocabulary(self) -> list[str]:
        """Token strings by id (for logit steering tables)."""
        tok = self.batcher.tok
        return [tok.token_text(i) for i in range(tok.vocab_size)]

    def emotion_context(self, emotion: str) -> list[float] | None:
        return self.emotion_contexts.get(emotion)

    def stream(self, prompt, params, *, kv_key=None, processors=()):
        return self.batcher.stream(
            prompt, params, kv_key=kv_key, processors=bind_processors(processors, self.batcher.tok)
        )

    async def complete(self, prompt, params, *, kv_key=None, processors=()) -> Completion:
        return await complete_from_stream(self.stream(prompt, params, kv_key=kv_key, processors=processors))

    async def aclose(self) -> None:
        await asyncio.to_thread(self.batcher.close)


def _load_emotion_adapter(model: Llama, model_sha256: str, which: bool | Path):
    """(AdapterConfig, file hash) of the adapter attached to `model`, or None."""
    if which is False:
        return None
    path = ea.SHIPPED_PATH if which is True else Path(which)
    if which is True and not path.exists():
        return None
    trained_on = ea.read_config(path).base_sha256
    if trained_on not in (None, model_sha256):  # checked before attaching: the model may have fewer layers
        if which is not True:
            raise ValueError(f"emotion adapter {path} was trained on another model ({trained_on[:12]})")
        log.info("emotion adapter not used: the shipped one was trained on another model")
        return None
    config = ea.load(model, path)
    for p in ea.adapter_params(model):
        p.requires_grad_(False)
    return config, ea.file_id(path)
