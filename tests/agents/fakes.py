"""A scripted fake generator for agents that regenerate sentences (no model needed)."""

from __future__ import annotations

from emotional_engine.lm.backends import ModelInfo
from emotional_engine.lm.engine import Completion


class ScriptedGenerator:
    """Replies with `replies` in turn (the last one repeats) and records every prompt it was sent."""

    info = ModelInfo("fake", "scripted")
    supports_logits_processors = False

    def __init__(self, *replies: str):
        self.replies = list(replies) or [""]
        self.prompts: list[list[dict]] = []

    async def complete(self, prompt, params, *, session_id=None, processors=()):
        reply = self.replies[min(len(self.prompts), len(self.replies) - 1)]
        self.prompts.append(prompt)
        return Completion(text=reply, finish_reason="stop")
