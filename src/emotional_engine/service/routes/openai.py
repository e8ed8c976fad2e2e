"""OpenAI-compatible routes: POST /v1/chat/completions and /v1/completions, whole or streamed (SSE `data:`
chunks, then `data: [DONE]`), behind the same keys, limits and metrics as the rest of /v1.

A chat is an interactive session (service/chat.py): the last user message is the player's action, and
the answer is the session's next beat, written by the engine with its agents. A text completion is the
opening beat of a story whose premise is the prompt. `n` asks for several alternative beats (swipes);
`max_tokens` and `stop` cut a beat where the client wants it cut.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from sse_starlette.sse import EventSourceResponse

from emotional_engine.domain import Emotion
from emotional_engine.lm.models import UnknownModelError
from emotional_engine.service import chat, serving
from emotional_engine.service.deps import KeyId, ServiceDep
from emotional_engine.service.errors import ApiError
from emotional_engine.service.routes.stories import ERRORS
from emotional_engine.session import BEAT_WORDS, StorySession

router = APIRouter(prefix="/v1", tags=["openai"])
MAX_CHOICES = 4


class EngineControls(BaseModel):
    """The engine's own controls, as extra fields of an OpenAI request."""

    arc: str | list[tuple[float, float]] | None = Field(None, description="a named arc or (t, valence) points")
    culture: str | None = Field(None, description="a supported BCP 47 tag, e.g. ja-JP")
    audience: Literal["children", "teen", "adult"] | None = None
    emotion: Emotion | None = Field(None, description="the emotion every beat aims at, instead of the arc's")
    turns: int | None = Field(None, ge=2, le=500, description="turns the arc is spread over")
    author_note: str | None = Field(None, max_length=1000, description="carried in every turn's message")
    preset: Literal["precise", "balanced", "creative", "wild"] | None = Field(
        None, description="named sampler settings; temperature and top_p, when given, win"
    )


class OpenAIRequest(EngineControls):
    model_config = ConfigDict(extra="ignore")  # clients send fields we have no use for (logit_bias, tools...)

    model: str = Field("", description="a configured model, optionally with :key=value controls")
    max_tokens: int | None = Field(None, ge=1, le=4096)
    max_completion_tokens: int | None = Field(None, ge=1, le=4096)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = Field(None, ge=0, le=2**32 - 1)
    n: int = Field(1, ge=1, le=MAX_CHOICES)
    user: str | None = Field(None, max_length=256)
    stream: bool = False
    stream_options: dict[str, Any] | None = None

    def controls(self) -> dict:
        return {k: v for k in chat.CONTROLS if (v := getattr(self, k)) is not None}

    def stops(self) -> list[str]:
        return [s for s in ([self.stop] if isinstance(self.stop, str) else self.stop or []) if s]

    def token_limit(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")  # name, tool calls...

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[dict[str, Any]] = Field(description="text, or OpenAI's content parts (the text parts are read)")


class ChatRequest(OpenAIRequest):
    messages: list[ChatMessage] = Field(min_length=1, description="the conversation; the last message is the player's")


class CompletionRequest(OpenAIRequest):
    prompt: str | list[str]


@dataclass
class Turn:
    """What a chat or completion asks the engine for."""

    kind: Literal["chat", "text"]
    body: OpenAIRequest
    conversation: chat.Conversation
    id: str
    created: int

    @property
    def object(self) -> str:
        return "chat.completion" if self.kind == "chat" else "text_completion"


@router.post("/chat/completions", responses=ERRORS)
async def chat_completions(body: ChatRequest, request: Request, key_id: KeyId, service: ServiceDep):
    conv = chat.conversation([m.model_dump() for m in body.messages])
    return await _answer(service, key_id, Turn("chat", body, conv, f"chatcmpl-{uuid.uuid4().hex}", int(time.time())))


@router.post("/completions", responses=ERRORS)
async def completions(body: CompletionRequest, request: Request, key_id: KeyId, service: ServiceDep):
    prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
    if len(prompts) != 1 or not prompts[0].strip():
        raise chat.invalid("prompt: give one non-empty prompt (the story's premise)", "prompt")
    conv = chat.Conversation(prompts[0].strip(), [], chat.CONTINUE)
    return await _answer(service, key_id, Turn("text", body, conv, f"cmpl-{uuid.uuid4().hex}", int(time.time())))


async def _answer(service, key_id: str, turn: Turn):
    body, conv = turn.body, turn.conversation
    name, controls = chat.split_model(body.model)
    controls = {**controls, **conv.controls, **body.controls()}  # the request's own fields win
    sampling = {k: v for k, v in (("temperature", body.temperature), ("top_p", body.top_p)) if v is not None}
    if body.preset:
        sampling["preset"] = body.preset
    story_request = chat.story_request(conv.premise, controls, name, body.seed, sampling, body.author_note)
    story_request = serving.with_model(service, story_request)

    def key_of(history: list) -> str:
        return chat.session_key(key_id, body.user, story_request, controls, history)

    turns = str(controls.get("turns") or service.settings.session_turns)
    if not turns.isdigit() or not 2 <= int(turns) <= 500:
        raise chat.invalid(f"turns: {turns!r} is not a whole number from 2 to 500", "turns")
    emotion = controls.get("emotion")
    if emotion is not None and emotion not in Emotion.__args__:
        raise chat.invalid(f"emotion: {emotion!r} is not one of {', '.join(Emotion.__args__)}", "emotion")
    usage = await serving.begin(service, key_id, "beat", BEAT_WORDS * body.n)  # 429 before any stream starts
    played: dict[str, str] = {}  # the session's id, once found or made
    beats = _beats(service, key_id, key_of, story_request, int(turns), emotion, turn, usage, played)
    if body.stream:
        ticket = await service.admission.acquire(key_id)
        return EventSourceResponse(_stream(service, turn, beats, ticket), ping=15)
    texts, finishes, counts = [""] * body.n, ["stop"] * body.n, Counts()
    async with service.admission.slot(key_id):
        async for piece in beats:
            texts[piece.choice] += piece.delta
            finishes[piece.choice] = piece.finish or finishes[piece.choice]
            counts.add(piece)
    return {
        "id": turn.id,
        "object": turn.object,
        "created": turn.created,
        "model": body.model,
        "choices": [_choice(turn, i, t, f) for i, (t, f) in enumerate(zip(texts, finishes))],
        "usage": counts.usage(),
        "engine": {"session": played.get("session"), "controls": controls},
    }


@dataclass
class Piece:
    choice: int
    delta: str
    finish: str | None = None  # on a choice's last piece
    prompt_tokens: int = 0  # on a choice's last piece: its beat's prompt, and what was written
    completion_tokens: int = 0


@dataclass
class Counts:
    prompt_tokens: int = 0  # the largest prompt of the choices (they answer the same conversation)
    completion_tokens: int = 0

    def add(self, piece: Piece) -> None:
        self.prompt_tokens = max(self.prompt_tokens, piece.prompt_tokens)
        self.completion_tokens += piece.completion_tokens

    def usage(self) -> dict:
        total = self.prompt_tokens + self.completion_tokens
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens, "total_tokens": total}


def _choice(turn: Turn, i: int, text: str, finish: str) -> dict:
    if turn.kind == "chat":
        return {
            "index": i,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish,
            "logprobs": None,
        }
    return {"index": i, "text": text, "finish_reason": finish, "logprobs": None}


async def _beats(
    service, key_id: str, key_of, request, turns: int, emotion, turn: Turn, usage, played: dict
) -> AsyncIterator[Piece]:
    """Each choice's beat as it is written. Every choice answers the same conversation: the session is
    taken back to it before each one, and kept under the conversation with the last choice."""
    body, conv = turn.body, turn.conversation
    key = key_of(conv.history)
    try:  # no lock: `take` hands the session to one request, another with the same conversation gets its own
        live = await service.sessions.take(key, request, turns, conv.history)
        live.emotion, played["session"] = emotion, live.id
        for i in range(body.n):
            live.restore_beats(live.beats[: len(conv.history)])
            text = ""
            async for delta, finish in _cut(live, conv.action, body.token_limit(), body.stops()):
                text += delta
                if finish is None:
                    yield Piece(i, delta)
                    continue
                written = len(live.beats) > len(conv.history)  # not when a cut left the beat unfinished
                prompt = live.beats[-1].prompt_tokens if written else 0
                # the beat's summary goes on after the answer, as a native turn's does
                yield Piece(i, delta, finish, prompt, live.deps.generator.count_tokens(text))
            service.metrics.generations.labels("beat").inc()
        if len(live.beats) > len(conv.history):
            service.sessions.keep(key_of([*conv.history, (conv.action, live.beats[-1].text)]), live)
    finally:
        await serving.account(service, key_id, usage)


async def _cut(
    live: StorySession, action: str, limit: int | None, stops: list[str]
) -> AsyncIterator[tuple[str, str | None]]:
    """(text, None) as the beat is shown, then ("", "stop") at its end; cut at the first stop string (the
    text before it, "stop") or once `limit` tokens are written (the words that fit, "length"). A cut beat
    is left unfinished: the session does not keep it."""
    text, count = "", live.deps.generator.count_tokens
    stream = live.stream_turn(action)
    try:
        async for piece in stream:
            found = [i for i in (piece.find(s) for s in stops) if i >= 0]
            if found:
                yield piece[: min(found)], "stop"
                return
            if limit is not None and count(text + piece) > limit:
                kept = ""
                for word in piece.split(" "):  # as many of the piece's words as fit
                    if count(text + kept + word) > limit:
                        break
                    kept += word + " "
                yield kept.rstrip(" "), "length"
                return
            text += piece
            yield piece, None
        yield "", "stop"
    finally:
        await stream.aclose()


async def _stream(service, turn: Turn, beats, ticket):
    """SSE chunks in OpenAI's shape: a role chunk per choice, content deltas, a finish chunk per choice,
    usage when asked for (`stream_options.include_usage`), then [DONE]; a failure as an `error` chunk."""
    body = turn.body
    chunk_object = "chat.completion.chunk" if turn.kind == "chat" else "text_completion"

    def chunk(i: int, delta: str | None, finish: str | None = None, role: bool = False) -> dict:
        if turn.kind == "chat":
            d = {"role": "assistant", "content": ""} if role else ({"content": delta} if delta else {})
            choice = {"index": i, "delta": d, "finish_reason": finish, "logprobs": None}
        else:
            choice = {"index": i, "text": delta or "", "finish_reason": finish, "logprobs": None}
        data = {"id": turn.id, "object": chunk_object, "created": turn.created, "model": body.model,
                "choices": [choice]}  # fmt: skip
        return {"data": json.dumps(data, ensure_ascii=False)}

    counts, started = Counts(), set()
    try:
        async for piece in beats:
            if piece.choice not in started and turn.kind == "chat":
                started.add(piece.choice)
                yield chunk(piece.choice, None, role=True)
            if piece.delta:
                yield chunk(piece.choice, piece.delta)
            if piece.finish:
                yield chunk(piece.choice, None, piece.finish)
            counts.add(piece)
        if (body.stream_options or {}).get("include_usage"):
            data = {"id": turn.id, "object": chunk_object, "created": turn.created, "model": body.model,
                    "choices": [], "usage": counts.usage()}  # fmt: skip
            yield {"data": json.dumps(data)}
        yield {"data": "[DONE]"}
    except (ApiError, UnknownModelError) as e:
        yield {"data": serving.error_event(e)["data"]}
    except Exception as e:
        yield {"data": serving.stream_failure(service, e)["data"]}
    finally:
        ticket.release()
