"""`OpenAIGenerator`: any OpenAI-compatible server (vLLM, Ollama, llama.cpp's server)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence

import httpx

from emotional_engine.lm.generator import (
    BackendError,
    Completion,
    ModelInfo,
    Piece,
    Prompt,
    begun_reply,
    complete_from_stream,
)
from emotional_engine.lm.openai_format import DeltaTally, check_no_processors, error_message
from emotional_engine.lm.sampling import LogitsProcessor, SamplingParams
from emotional_engine.lm.tokenizer import COMMON_CONTROL_TOKENS, Defuser
from emotional_engine.text import estimate_tokens

_defuse = Defuser(COMMON_CONTROL_TOKENS)


class OpenAIGenerator:
    """Any OpenAI-compatible server (vLLM, Ollama, llama.cpp's server), always streaming.

    A `str` prompt goes to /v1/completions, a message list to /v1/chat/completions. `base_url` is the
    server root (http://host:8000); a trailing /v1 is accepted too. The server does its own prefix
    caching, so `kv_key` is ignored. Token counts are estimates; `Piece.logprob` stays None.
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

    def count_tokens(self, text: str) -> int:
        """An estimate: the server's tokenizer is not visible from here."""
        return estimate_tokens(text)

    def vocabulary(self) -> None:
        return None

    def emotion_context(self, emotion: str) -> None:
        return None

    def request_body(self, prompt: Prompt, params: SamplingParams) -> dict:
        """The JSON body sent for `prompt` with `params` (extra sampling fields only when not off)."""
        body: dict = {"model": self.model}
        if isinstance(prompt, str):
            body["prompt"] = prompt
        else:
            # the server's vocabulary is not visible: the common templates' control tokens are defused
            body["messages"] = [{**m, "content": _defuse(m["content"])} for m in prompt]
            if begun_reply(prompt):  # vLLM's way to continue the reply begun
                body.update(continue_final_message=True, add_generation_prompt=False)
        body.update(
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            presence_penalty=params.presence_penalty,
            frequency_penalty=params.frequency_penalty,
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

    def stream(
        self,
        prompt: Prompt,
        params: SamplingParams,
        *,
        kv_key: str | None = None,
        processors: Sequence[LogitsProcessor] = (),
    ) -> AsyncIterator[Piece]:
        check_no_processors("openai", processors)
        chat = not isinstance(prompt, str)
        url = f"{self.base_url}/v1/{'chat/completions' if chat else 'completions'}"
        return self._stream(url, self.request_body(prompt, params), chat)

    async def _stream(self, url: str, body: dict, chat: bool) -> AsyncIterator[Piece]:
        tally = DeltaTally(chat)
        done = False
        try:
            async with self._client.stream("POST", url, json=body) as resp:
                if resp.status_code >= 400:
                    msg = error_message(await resp.aread())
                    raise BackendError(
                        f"{url} answered HTTP {resp.status_code} {resp.reason_phrase}" + (f": {msg}" if msg else "")
                    )
                async for line in resp.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # blank separators, comments, event: lines
                    data = line[len("data:") :].strip()
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
                        raise BackendError(f"{url} failed mid-stream: {error_message(data.encode())}")
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

    async def complete(self, prompt, params, *, kv_key=None, processors=()) -> Completion:
        return await complete_from_stream(self.stream(prompt, params, kv_key=kv_key, processors=processors))

    async def aclose(self) -> None:
        await self._client.aclose()
