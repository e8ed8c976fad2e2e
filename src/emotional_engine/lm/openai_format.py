"""The OpenAI streaming format both the OpenAI-compatible client and llama-cpp-python speak: chunk
deltas, finish reasons, usage and error bodies."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence

from emotional_engine.lm.generator import Piece
from emotional_engine.lm.sampling import LogitsProcessor

# Server finish reasons -> ours (stop | length | cancelled | error).
FINISH_REASONS = {
    "stop": "stop",
    "eos": "stop",
    "eos_token": "stop",
    "stop_sequence": "stop",
    "end_turn": "stop",
    "content_filter": "stop",
    "tool_calls": "stop",
    "function_call": "stop",
    "length": "length",
    "max_tokens": "length",
    "model_length": "length",
    "abort": "cancelled",
    "cancelled": "cancelled",
    "canceled": "cancelled",
    "error": "error",
}


def map_finish_reason(reason: str | None) -> str:
    if reason is None:
        return "stop"
    return FINISH_REASONS.get(reason, "stop")


def chunk_delta(chunk: dict, chat: bool) -> tuple[str, str | None]:
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


def check_no_processors(backend: str, processors: Sequence[LogitsProcessor]) -> None:
    if processors:
        raise ValueError(
            f"the {backend} backend cannot apply logits processors (it never sees the logits); "
            "use the builtin backend for steering"
        )


def usage(
    server_usage: dict | None, prompt_tokens: int, completion_tokens: int, t0: float, t_first: float | None, now: float
) -> dict:
    u = server_usage or {}
    details = u.get("prompt_tokens_details") or {}
    return {
        "prompt_tokens": int(u.get("prompt_tokens") or prompt_tokens),
        "completion_tokens": int(u.get("completion_tokens") or completion_tokens),
        "cached_tokens": int(details.get("cached_tokens") or 0),
        "ttft_ms": 1000 * ((t_first or now) - t0),
        "total_ms": 1000 * (now - t0),
    }


def error_message(body: bytes) -> str:
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


class DeltaTally:
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
        text, reason = chunk_delta(chunk, self.chat)
        if text:
            if self.t_first is None:
                self.t_first = time.perf_counter()
            self.n_pieces += 1
        if reason is not None:
            self.finish = reason
        return text

    def last_piece(self, prompt_tokens: int = 0) -> Piece:
        return Piece(
            text="",
            finish_reason=map_finish_reason(self.finish),
            usage=usage(self.usage, prompt_tokens, self.n_pieces, self.t0, self.t_first, time.perf_counter()),
        )
