"""`LlamaCppGenerator`: llama-cpp-python's `Llama`, when it happens to be installed."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path

from emotional_engine.lm.generator import (
    BackendError,
    Completion,
    ModelInfo,
    Piece,
    Prompt,
    begun_reply,
    complete_from_stream,
)
from emotional_engine.lm.gguf import special_tokens
from emotional_engine.lm.openai_format import DeltaTally, check_no_processors
from emotional_engine.lm.sampling import LogitsProcessor, SamplingParams
from emotional_engine.lm.tokenizer import CHATML, Defuser, render_chat

_END = object()


class LlamaCppGenerator:
    """llama-cpp-python's `Llama`, when it happens to be installed (it is not a dependency).

    Generation runs in a worker thread, one request at a time (a `Llama` is not thread-safe).
    `Piece.logprob` stays None. llama-cpp-python tokenizes every prompt with special=True, so the
    contents of chat messages are defused with the file's `specials` (a text prompt passes as it is)."""

    supports_logits_processors = False

    def __init__(self, llm, info: ModelInfo, specials: Iterable[str] = ()):
        self.llm = llm
        self.info = info
        self.defuse = Defuser(specials)
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls, path: str | Path, *, n_ctx: int = 4096, n_threads: int | None = None, **llama_kwargs
    ) -> LlamaCppGenerator:
        try:
            import llama_cpp
        except ImportError as e:
            raise BackendError("llama-cpp-python is not installed; pip install llama-cpp-python") from e
        path = Path(path)
        if not path.is_file():
            raise BackendError(f"model file {path} does not exist")
        specials = special_tokens(path)
        llama_kwargs.setdefault("verbose", False)
        try:
            llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=n_threads, **llama_kwargs)
        except Exception as e:
            raise BackendError(f"llama-cpp-python could not load {path}: {e}") from e
        meta = getattr(llm, "metadata", None) or {}
        info = ModelInfo(
            "llama-cpp", meta.get("general.name") or path.stem, None, llm.n_ctx(), None, prompt_style="continuation"
        )
        return cls(llm, info, specials)

    def render(self, messages: list[dict[str, str]]) -> str:
        """Messages ending with an assistant message, as text to continue: through the file's chat
        template (ChatML without one); no BOS, which llama.cpp adds itself."""
        meta = getattr(self.llm, "metadata", None) or {}
        return render_chat(meta.get("tokenizer.chat_template") or CHATML, messages, bos="", eos="",
                           add_generation_prompt=True)  # fmt: skip

    def _defused(self, messages) -> list[dict[str, str]]:
        """Only the chat template's own markers may become special tokens, not the messages' text."""
        return [{**m, "content": self.defuse(m["content"])} for m in messages]

    def count_tokens(self, text: str) -> int:
        """Exact, with the model's own tokenizer (as llama.cpp adds BOS, when the model wants one)."""
        return len(self.llm.tokenize(text.encode("utf-8")))

    def vocabulary(self) -> None:
        return None  # it takes no logits processors, so no steering table is built for it

    def emotion_context(self, emotion: str) -> None:
        return None

    @staticmethod
    def request_kwargs(params: SamplingParams) -> dict:
        """Keyword arguments for `create_completion` / `create_chat_completion` (ignore_eos is not
        supported by llama-cpp-python and is dropped)."""
        return dict(
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k,
            min_p=params.min_p,
            repeat_penalty=params.repetition_penalty,
            presence_penalty=params.presence_penalty,
            frequency_penalty=params.frequency_penalty,
            stop=list(params.stop) or None,
            seed=params.seed,
            stream=True,
        )

    def stream(
        self,
        prompt: Prompt,
        params: SamplingParams,
        *,
        kv_key: str | None = None,
        processors: Sequence[LogitsProcessor] = (),
    ) -> AsyncIterator[Piece]:
        check_no_processors("llama-cpp", processors)
        return self._stream(prompt, self.request_kwargs(params))

    def _worker(self, prompt: Prompt, kwargs: dict, emit, stop: threading.Event) -> None:
        try:
            with self._lock:
                if stop.is_set():
                    return
                if isinstance(prompt, str):
                    it = self.llm.create_completion(prompt=prompt, **kwargs)
                elif begun_reply(prompt):
                    it = self.llm.create_completion(prompt=self.render(self._defused(prompt)), **kwargs)
                else:
                    it = self.llm.create_chat_completion(messages=self._defused(prompt), **kwargs)
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
        chat = not isinstance(prompt, str) and not begun_reply(prompt)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        stop = threading.Event()

        def emit(item) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is closed: nobody is listening any more
                stop.set()

        tally = DeltaTally(chat)
        thread = threading.Thread(
            target=self._worker, args=(prompt, kwargs, emit, stop), name="llama-cpp-generate", daemon=True
        )
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

    async def complete(self, prompt, params, *, kv_key=None, processors=()) -> Completion:
        return await complete_from_stream(self.stream(prompt, params, kv_key=kv_key, processors=processors))

    async def aclose(self) -> None:
        def _close() -> None:
            with self._lock:
                close = getattr(self.llm, "close", None)
                if close is not None:
                    close()

        await asyncio.to_thread(_close)
