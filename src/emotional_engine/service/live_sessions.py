"""Live interactive sessions: the in-memory `StorySession` objects behind the stored ones.

The store holds every committed turn and, beside each, that beat's part of the story memory; this
keeps the recent sessions' objects (and through their ids the LM runtime's KV caches) and rebuilds
one from the store when it is not here (after a restart, or on another replica). One lock per
session keeps its turns in order.
"""

from __future__ import annotations

import asyncio
import functools
import weakref

from cachetools import TTLCache

from emotional_engine.domain import StoryRequest
from emotional_engine.session import Beat, StorySession


class LiveSessions:
    def __init__(self, engine, max_live: int, idle_ttl_s: float, taken, lookups, keep_facts=None):
        self.engine = engine
        self.taken = taken  # a counter of chat sessions by how `take` had them (metrics.chat_sessions)
        self.lookups = lookups  # a counter of `get`s by whether the session was live (metrics.session_lookups)
        self.keep_facts = keep_facts  # async (session_id, index, part): stores a beat's part of the memory
        self._live: TTLCache[str, StorySession] = TTLCache(maxsize=max_live, ttl=idle_ttl_s)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()

    def lock(self, session_id: str) -> asyncio.Lock:
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        return lock

    async def get(
        self, session_id: str, request: dict, turns: int, beats: list[dict], parts: list[dict | None]
    ) -> StorySession:
        """The live session, rebuilt when it is not in memory from its stored request, beats and the
        parts of its story memory kept beside them (one per beat, None where none was kept)."""
        s = self._live.get(session_id)
        warm = s is not None and len(s.beats) == len(beats)
        self.lookups.labels("warm" if warm else "rebuilt").inc()
        if not warm:
            s = await self.engine.session(StoryRequest.model_validate(request), turns)
            s.id = session_id  # the runtime keys the session's KV cache by it
            s.restore_beats([Beat.model_validate(b) for b in beats])
            if self.keep_facts is not None:
                s.kept = functools.partial(self.keep_facts, session_id)
            await s.restore_memory(parts)
        self._live[session_id] = s
        return s

    async def take(self, key: str, request: StoryRequest, turns: int, history: list[tuple[str, str]]) -> StorySession:
        """The live session kept under `key` whose beats are `history`'s (action, beat) turns (a chat's),
        taken out: two requests never play one session object at once; else one rebuilt from the turns.
        `keep` puts it back under the key of where it is then."""
        s = self._live.pop(key, None)
        found = s is not None and [(b.action, b.text) for b in s.beats] == history
        if not found:
            s = await self.engine.session(request, turns)
            s.restore_history(history)
        s.request = request  # the same story (the key says so); its seed and sampling may be this call's own
        self.taken.labels("found" if found else "made").inc()
        return s

    def keep(self, key: str, session: StorySession) -> None:
        self._live[key] = session

    def take_request(self, session_id: str, request: StoryRequest) -> None:
        """The stored request changed (its lorebook edited): the live session, if any, plays on with it."""
        s = self._live.get(session_id)
        if s is not None:
            s.request = request

    def drop(self, session_id: str) -> None:
        self._live.pop(session_id, None)
