"""The `Generator` protocol every layer above writes through, and its implementations.

- `BuiltinGenerator`: our own decoder on a GGUF file (the embedded SmolLM2 by default).
- `OpenAIGenerator`: any OpenAI-compatible server (vLLM, Ollama, llama.cpp's server).
- `LlamaCppGenerator`: llama-cpp-python, only when it happens to be installed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import httpx

from emotional_engine.lm import emotion_attention as ea
from emotional_engine.lm.engine import Completion, LMEngine, Piece
from emotional_engine.threads import run_in_passing_thread
from emotional_engine.lm.gguf import embedded_model_path, load_gguf
from emotional_engine.lm.model import Llama
from emotional_engine.lm.quant import WEIGHT_FORMATS, apply_weight_format
from emotional_engine.lm.sampling import LogitsProcessor, SamplingParams
from emotional_engine.lm.tokenizer import BPETokenizer

if TYPE_CHECKING:
    from emotional_engine.config import ModelSpec, Settings

log = logging.getLogger(__name__)

Prompt = str | list[dict[str, str]]  # raw text, or chat messages [{"role": ..., "content": ...}]


@dataclass
class ModelInfo:
    backend: str  # builtin | openai | llama-cpp
    name: str
    sha256: str | None = None  # of the weights file, when there is one
    context_length: int | None = None
    weight_format: str | None = None
    adapter: str | None = None  # emotion-attention adapter in use: name and file hash


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


def emotion_context(generator: Generator, emotion: str) -> list[float] | None:
    """The conditioning vector `generator`'s emotion adapter uses for `emotion`; None when it has
    no adapter (other backends, or the adapter turned off)."""
    return getattr(generator, "emotion_contexts", {}).get(emotion)


async def complete_from_stream(pieces: AsyncIterator[Piece]) -> Completion:
    return Completion.from_pieces([p async for p in pieces])


class BuiltinGenerator:
    """Our decoder behind the continuous-batching engine."""

    supports_logits_processors = True

    def __init__(self, engine: LMEngine, info: ModelInfo, emotion_contexts: dict[str, list[float]] | None = None):
        self.engine = engine
        self.info = info
        # target emotion -> the adapter's conditioning vector (SamplingParams.emotion_context); empty
        # without an adapter
        self.emotion_contexts = emotion_contexts or {}

    @classmethod
    def load(
        cls,
        path: str | Path | None = None,
        *,
        weight_format: str = "fp16",
        max_batch: int = 16,
        cache_budget_mb: int = 512,
        overflow: str = "truncate",
        cache_dir: Path | None = None,
        emotion_adapter: bool | Path = True,
    ) -> BuiltinGenerator:
        """`emotion_adapter`: True loads the shipped adapter when it was trained on this model's
        weights, a path loads that file, False runs the base model."""
        if weight_format not in WEIGHT_FORMATS:
            raise ValueError(f"weight format {weight_format!r} is unknown; choose one of {', '.join(WEIGHT_FORMATS)}")

        def build():
            g, sd = load_gguf(path or embedded_model_path(), cache_dir=cache_dir)
            return g, apply_weight_format(Llama.from_state_dict(g.config, sd), weight_format)

        g, model = run_in_passing_thread(build)
        adapter = _load_emotion_adapter(model, g.sha256, emotion_adapter)
        engine = LMEngine(model, BPETokenizer(g.tokenizer), max_batch=max_batch,
                          cache_budget_bytes=cache_budget_mb * 2**20, overflow=overflow)
        info = ModelInfo("builtin", g.name, g.sha256, g.config.context_length, weight_format,
                         adapter=adapter and f"{adapter[0].name}@{adapter[1]}")
        return cls(engine, info, adapter[0].emotion_contexts if adapter else None)

    def vocabulary(self) -> list[str]:
        """Token strings by id (for logit steering tables)."""
        tok = self.engine.tok
        return [tok.token_text(i) for i in range(tok.vocab_size)]

    def stream(self, prompt, params, *, session_id=None, processors=()):
        return self.engine.stream(prompt, params, session_id=session_id, processors=processors)

    async def complete(self, prompt, params, *, session_id=None, processors=()) -> Completion:
        return await complete_from_stream(self.stream(prompt, params, session_id=session_id, processors=processors))

    async def aclose(self) -> None:
        await asyncio.to_thread(self.engine.close)


def _load_emotion_adapter(model: Llama, model_sha256: str, which: bool | Path):
    """(AdapterConfig, file hash) of the adapter attached to `model`, or None."""
    if which is False:
        return None
    path = ea.SHIPPED_PATH if which is True else Path(which)
    if which is True and not path.exists():
        return None
    config = ea.load(model, path)
    if config.base_sha256 not in (None, model_sha256):
        if which is not True:
            raise ValueError(f"emotion adapter {path} was trained on another model ({config.base_sha256[:12]})")
        ea.detach(model)  # the shipped adapter belongs to the embedded model, not this one
        log.info("emotion adapter not used: trained on another model")
        return None
    for p in ea.adapter_params(model):
        p.requires_grad_(False)
    return config, ea.file_id(path)


class BackendError(RuntimeError):
    """A backend could not be reached, refused a request, or sent something unusable."""


# Server finish reasons -> ours (stop | length | cancelled | error).
_FINISH_REASONS = {
    "stop": "stop", "eos": "stop", "eos_token": "stop", "stop_sequence": "stop", "end_turn": "stop",
    "content_filter": "stop", "tool_calls": "stop", "function_call": "stop",
    "length": "length", "max_tokens": "length", "model_length": "length",
    "abort": "cancelled", "cancelled": "cancelled", "canceled": "cancelled",
    "error": "error",
}


def _map_finish_reason(reason: str | None) -> str:
    if reason is None:
        return "stop"
    return _FINISH_REASONS.get(reason, "stop")


def _chunk_delta(chunk: dict, chat: bool) -> tuple[str, str | None]:
    """(text, finish_reason) of choice 0 of an OpenAI-format streaming chunk (either endpoint)."""
    choices = chunk.get("choices") or []
    if not choices:
        return "", None
    choice = choices[0]
    if chat:
        text = (choice.get("delta") or {}).get("content") or ""
    else:
        text = choice.get("text") or ""
    return text, choice.get("finish_reason")


def _check_no_processors(backend: str, processors: Sequence[LogitsProcessor]) -> None:
    if processors:
        raise ValueError(
            f"the {backend} backend cannot apply logits processors (it never sees the logits); "
            "use the builtin backend for steering"
        )


def _usage(server_usage: dict | None, prompt_tokens: int, completion_tokens: int,
           t0: float, t_first: float | None, now: float) -> dict:
    u = server_usage or {}
    details = u.get("prompt_tokens_details") or {}
    return {
        "prompt_tokens": int(u.get("prompt_tokens") or prompt_tokens),
        "completion_tokens": int(u.get("completion_tokens") or completion_tokens),
        "cached_tokens": int(details.get("cached_tokens") or 0),
        "ttft_ms": 1000 * ((t_first or now) - t0),
        "total_ms": 1000 * (now - t0),
    }


def _error_message(body: bytes) -> str:
    """The server's error message from an error body in any of the usual shapes."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        return text[:500]
    if isinstance(data, dict):
        err = data.get("error", data)
        if isinstance(err, str):
            return err
        if isinstance(err, dict):
            for key in ("message", "detail", "msg"):
                if isinstance(err.get(key), str):
                    return err[key]
    return text[:500]


class _DeltaTally:
    """Follows a stream of OpenAI-format chunks: text deltas, finish reason, usage, timing."""

    def __init__(self, chat: bool):
        self.chat = chat
        self.t0 = time.perf_counter()
        self.t_first: float | None = None
        self.n_pieces = 0
        self.finish: str | None = None
        self.usage: dict | None = None  # the server's, when it sends one

    def feed(self, chunk: dict) -> str:
        """The chunk's text ('' for none)."""
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        text, reason = _chunk_delta(chunk, self.chat)
        if text:
            if self.t_first is None:
                self.t_first = time.perf_counter()
            self.n_pieces += 1
        if reason is not None:
            self.finish = reason
        return text

    def last_piece(self, prompt_tokens: int = 0) -> Piece:
        return Piece(text="", finish_reason=_map_finish_reason(self.finish),
                     usage=_usage(self.usage, prompt_tokens, self.n_pieces, self.t0, self.t_first, time.perf_counter()))


class OpenAIGenerator:
    """Any OpenAI-compatible server (vLLM, Ollama, llama.cpp's server), always streaming.

    A `str` prompt goes to /v1/completions, a message list to /v1/chat/completions. `base_url` is the
    server root (http://host:8000); a trailing /v1 is accepted too. The server does its own prefix
    caching, so `session_id` is ignored.
    """

    supports_logits_processors = False

    def __init__(self, base_url: str, model: str, api_key: str | None = None, timeout: float = 120.0):
        base = base_url.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        self.base_url = base
        self.model = model
        self.timeout = timeout
        self.info = ModelInfo("openai", model, None, None, None)
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout), headers=headers)

    def request_body(self, prompt: Prompt, params: SamplingParams) -> dict:
        """The JSON body sent for `prompt` with `params` (extra sampling fields only when not off)."""
        body: dict = {"model": self.model}
        if isinstance(prompt, str):
            body["prompt"] = prompt
        else:
            body["messages"] = list(prompt)
        body.update(
            stream=True, stream_options={"include_usage": True},
            max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
            presence_penalty=params.presence_penalty, frequency_penalty=params.frequency_penalty,
        )
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        # Not in OpenAI's API; vLLM and llama.cpp's server accept them. Sent only when on, so that
        # stricter servers are not handed fields they reject.
        if params.top_k:
            body["top_k"] = params.top_k
        if params.min_p:
            body["min_p"] = params.min_p
        if params.repetition_penalty != 1.0:
            body["repetition_penalty"] = params.repetition_penalty
        if params.ignore_eos:
            body["ignore_eos"] = True
        return body

    def stream(self, prompt: Prompt, params: SamplingParams, *, session_id: str | None = None,
               processors: Sequence[LogitsProcessor] = ()) -> AsyncIterator[Piece]:
        _check_no_processors("openai", processors)
        chat = not isinstance(prompt, str)
        url = f"{self.base_url}/v1/{'chat/completions' if chat else 'completions'}"
        return self._stream(url, self.request_body(prompt, params), chat)

    async def _stream(self, url: str, body: dict, chat: bool) -> AsyncIterator[Piece]:
        tally = _DeltaTally(chat)
        done = False
        try:
            async with self._client.stream("POST", url, json=body) as resp:
                if resp.status_code >= 400:
                    msg = _error_message(await resp.aread())
                    raise BackendError(f"{url} answered HTTP {resp.status_code} {resp.reason_phrase}"
                                       + (f": {msg}" if msg else ""))
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, event: lines
                    data = line[len("data:"):].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise BackendError(f"{url} sent a malformed stream event: {data[:200]!r}") from None
                    if not isinstance(chunk, dict):
                        raise BackendError(f"{url} sent a malformed stream event: {data[:200]!r}")
                    if chunk.get("error"):
                        raise BackendError(f"{url} failed mid-stream: {_error_message(data.encode())}")
                    if text := tally.feed(chunk):
                        yield Piece(text=text)
        except httpx.TimeoutException as e:
            raise BackendError(f"{url} timed out ({type(e).__name__}, timeout {self.timeout:g} s)") from e
        except httpx.ConnectError as e:
            raise BackendError(f"cannot connect to {url}: {str(e) or type(e).__name__}") from e
        except httpx.HTTPError as e:
            raise BackendError(f"request to {url} failed: {type(e).__name__}: {e}") from e
        if not done and tally.finish is None:
            raise BackendError(f"{url} closed the stream before the response was complete")
        yield tally.last_piece()

    async def complete(self, prompt, params, *, session_id=None, processors=()) -> Completion:
        return await complete_from_stream(self.stream(prompt, params, session_id=session_id, processors=processors))

    async def aclose(self) -> None:
        await self._client.aclose()


_END = object()


class LlamaCppGenerator:
    """llama-cpp-python's `Llama`, when it happens to be installed (it is not a dependency).

    Generation runs in a worker thread, one request at a time (a `Llama` is not thread-safe)."""

    supports_logits_processors = False

    def __init__(self, llm, info: ModelInfo):
        self.llm = llm
        self.info = info
        self._lock = threading.Lock()

    @classmethod
    def load(cls, path: str | Path, *, n_ctx: int = 4096, n_threads: int | None = None,
             **llama_kwargs) -> LlamaCppGenerator:
        try:
            import llama_cpp
        except ImportError as e:
            raise BackendError("llama-cpp-python is not installed; pip install llama-cpp-python") from e
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"model file {path} does not exist")
        llama_kwargs.setdefault("verbose", False)
        try:
            llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, **llama_kwargs)
        except Exception as e:
            raise BackendError(f"llama-cpp-python could not load {path}: {e}") from e
        meta = getattr(llm, "metadata", None) or {}
        info = ModelInfo("llama-cpp", meta.get("general.name") or path.stem, None, llm.n_ctx(), None)
        return cls(llm, info)

    @staticmethod
    def request_kwargs(params: SamplingParams) -> dict:
        """Keyword arguments for `create_completion` / `create_chat_completion` (ignore_eos is not
        supported by llama-cpp-python and is dropped)."""
        return dict(
            max_tokens=params.max_tokens, temperature=params.temperature, top_p=params.top_p,
            top_k=params.top_k, min_p=params.min_p, repeat_penalty=params.repetition_penalty,
            presence_penalty=params.presence_penalty, frequency_penalty=params.frequency_penalty,
            stop=list(params.stop) or None, seed=params.seed, stream=True,
        )

    def stream(self, prompt: Prompt, params: SamplingParams, *, session_id: str | None = None,
               processors: Sequence[LogitsProcessor] = ()) -> AsyncIterator[Piece]:
        _check_no_processors("llama-cpp", processors)
        return self._stream(prompt, self.request_kwargs(params))

    def _worker(self, prompt: Prompt, kwargs: dict, emit, stop: threading.Event) -> None:
        try:
            with self._lock:
                if stop.is_set():
                    return
                if isinstance(prompt, str):
                    it = self.llm.create_completion(prompt=prompt, **kwargs)
                else:
                    it = self.llm.create_chat_completion(messages=list(prompt), **kwargs)
                try:
                    for chunk in it:
                        emit(chunk)
                        if stop.is_set():
                            break
                finally:
                    close = getattr(it, "close", None)
                    if close is not None:
                        close()
        except BaseException as e:  # noqa: BLE001 - handed to the consumer
            emit(e)
        finally:
            emit(_END)

    async def _stream(self, prompt: Prompt, kwargs: dict) -> AsyncIterator[Piece]:
        chat = not isinstance(prompt, str)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def emit(item) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                stop.set()

        tally = _DeltaTally(chat)
        thread = threading.Thread(target=self._worker, args=(prompt, kwargs, emit, stop),
                                  name="llama-cpp-generate", daemon=True)
        thread.start()
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                if isinstance(item, BaseException):
                    raise BackendError(f"llama-cpp-python failed: {type(item).__name__}: {item}") from item
                if text := tally.feed(item):
                    yield Piece(text=text)
        finally:
            stop.set()  # the worker stops after its current token if we were left early
        prompt_tokens = 0
        if not chat and tally.usage is None:
            try:
                prompt_tokens = len(self.llm.tokenize(prompt.encode("utf-8")))
            except Exception:  # noqa: BLE001 - usage is best effort
                prompt_tokens = 0
        yield tally.last_piece(prompt_tokens)

    async def complete(self, prompt, params, *, session_id=None, processors=()) -> Completion:
        return await complete_from_stream(self.stream(prompt, params, session_id=session_id, processors=processors))

    async def aclose(self) -> None:
        def _close() -> None:
            with self._lock:
                close = getattr(self.llm, "close", None)
                if close is not None:
                    close()
        await asyncio.to_thread(_close)


def make_generator(spec: ModelSpec, settings: Settings) -> Generator:
    """The generator of one configured model; the builtin runtime takes its options from `settings`."""
    if spec.openai is not None:
        return OpenAIGenerator(spec.openai.base_url, spec.openai.model, spec.openai.key())
    if spec.runtime == "llama-cpp":
        return LlamaCppGenerator.load(spec.gguf)
    return BuiltinGenerator.load(
        spec.gguf, weight_format=settings.weight_format, max_batch=settings.max_batch,
        cache_budget_mb=settings.kv_cache_budget_mb, overflow=settings.context_overflow,
        cache_dir=settings.cache_dir, emotion_adapter=settings.emotion_adapter,
    )
