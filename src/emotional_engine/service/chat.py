"""An OpenAI chat as an interactive session (the OpenAI-compatible routes, routes/openai.py).

The conversation is the session: the system message is the premise (or, without one, the first user
message), each user message an action and each assistant reply after it a beat already played, and the
last user message the action to answer. A client sends the whole conversation every time, so nothing
needs keeping between requests: the session that matches it is found in memory (same key, same premise
and controls, and its beats are the replies the client holds) or rebuilt from the messages.

The engine's controls ride, from weakest to strongest, in a model name suffix (`default:arc=icarus,
culture=ja-JP`), a first line of the system message (`[engine: arc=icarus, audience=children]`), and
the request's own fields (`arc`, `culture`, `audience`, `emotion`, `turns`).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

from pydantic import ValidationError

from emotional_engine.domain import StoryRequest
from emotional_engine.service.errors import ApiError

CONTROLS = ("arc", "culture", "audience", "emotion", "turns")
_HEADER = re.compile(r"^\s*\[engine:([^\]]*)\]\s*", re.IGNORECASE)
CONTINUE = "Begin the story."  # the action of a text completion: the prompt is the premise


def invalid(message: str, param: str | None = None) -> ApiError:
    return ApiError(400, "invalid_request", message, param=param)


def parse_controls(text: str, where: str) -> dict[str, str]:
    """`arc=icarus, culture=ja-JP` -> {"arc": "icarus", "culture": "ja-JP"}; an unknown key is an error."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, value = part.partition("=")
        key = key.strip().lower()
        if not sep or key not in CONTROLS or not value.strip():
            raise invalid(f"{where}: {part!r} is not a control; write key=value with a key among {', '.join(CONTROLS)}")
        out[key] = value.strip()
    return out


def split_model(model: str) -> tuple[str | None, dict[str, str]]:
    """`name:arc=icarus,culture=ja-JP` -> ("name", controls); an empty name is the server's default."""
    name, _, suffix = model.partition(":")
    return name.strip() or None, parse_controls(suffix, "model") if suffix else {}


@dataclass
class Conversation:
    premise: str
    history: list[tuple[str, str]]  # (action, beat) pairs already played
    action: str
    controls: dict[str, str] = field(default_factory=dict)  # from the system message's header


def text_of(content) -> str:
    """A message's content: a string, or OpenAI's list of parts (the text parts joined)."""
    if isinstance(content, str):
        return content
    return "\n".join(p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text")


def conversation(messages: list[dict]) -> Conversation:
    """Premise, turns and the action to answer, from OpenAI chat messages ({"role", "content"})."""
    system, controls, turns, opening = [], {}, [], []
    for i, m in enumerate(messages):
        role, text = m.get("role"), text_of(m.get("content")).strip()
        if role in ("system", "developer"):
            header = _HEADER.match(text)
            if header and not system:
                controls = parse_controls(header.group(1), "the system message's [engine: ...] line")
                text = text[header.end() :]
            if text:
                system.append(text)
        elif role == "user":
            if turns and turns[-1][1] is None:  # two user messages in a row: one action
                turns[-1][0] += "\n" + text
            elif text:
                turns.append([text, None])
        elif role == "assistant":
            if not turns:  # a greeting before any action (a character card's first message): story material
                opening.append(text)
            elif turns[-1][1] is None:
                turns[-1][1] = text
            else:
                turns[-1][1] += "\n\n" + text
        else:
            raise invalid(f"messages[{i}].role: {role!r} is not one of system, developer, user, assistant", "messages")
    if not turns or turns[-1][1] is not None:
        raise invalid(
            "messages: the last message must be the player's (role user), which the story answers", "messages"
        )
    premise = "\n".join(system) or turns[0][0]
    if opening:
        premise += "\nThe story so far: " + " ".join(opening)
    return Conversation(premise, [(a, b) for a, b in turns[:-1]], turns[-1][0], controls)


def story_request(
    premise: str, controls: dict, model: str | None, seed: int | None, sampling: dict, author_note: str | None = None
) -> StoryRequest:
    """The session's request; what fails validation is a 400 naming the field."""
    body = {k: v for k, v in controls.items() if k in ("arc", "culture", "audience")}
    try:
        return StoryRequest(premise=premise, model=model, seed=seed, sampling=sampling, author_note=author_note, **body)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(x) for x in err["loc"]) or "request"
        if where == "premise":
            where = "premise (the system message, or the first user message without one)"
        raise invalid(f"{where}: {err['msg']}", where.split()[0]) from None


def session_key(key_id: str, user: str | None, request: StoryRequest, controls: dict, history: list) -> str:
    """Where the live session of this conversation is kept: the same caller, end user, premise, controls and
    turns so far. After a turn it is kept under the key of the conversation with that turn."""
    ident = {
        "key": key_id,
        "user": user,
        "request": request.model_dump(mode="json", exclude={"seed", "sampling", "author_note"}),
        "controls": {k: controls.get(k) for k in ("emotion", "turns")},
        "history": [list(turn) for turn in history],
    }
    return "chat-" + hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:32]
