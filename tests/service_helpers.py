"""Helpers for the service tests: a free loopback port, SSE parsing, waiting for a job."""

from __future__ import annotations

import asyncio
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


async def wait_for_job(c, job_id: str, until, timeout: float = 20.0) -> dict:
    """Poll the job until `until(job)` holds; fail after `timeout` seconds."""
    for _ in range(int(timeout / 0.05)):
        job = (await c.get(f"/v1/jobs/{job_id}")).json()
        if until(job):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError(f"job never got there: {job}")
