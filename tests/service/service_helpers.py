"""Helpers for the service tests: a free loopback port, and SSE parsing."""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_sse(text: str) -> list[tuple[str, str]]:
    """(event, data) pairs of an SSE body."""
    events, kind = [], None
    for line in text.splitlines():
        if line.startswith("event:"):
            kind = line.split(":", 1)[1].strip()
        elif line.startswith("data:"):
            events.append((kind, line.split(":", 1)[1].strip()))
    return events
