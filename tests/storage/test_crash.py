"""A server killed with SIGKILL in the middle of a turn loses no earlier turn and leaves no half of
the interrupted one: the process is killed after the turn's row is flushed and before the commit."""

import signal
import subprocess
import sys
from pathlib import Path

from sqlalchemy import text

import emotional_engine
from emotional_engine.storage import Store

SRC = str(Path(emotional_engine.__file__).parents[1])

PLAYER = r"""
import os, signal, sys
from sqlalchemy import event
from sqlalchemy.orm import Session
from emotional_engine.storage import Store

url, session_id, key_id = sys.argv[1:4]
store = Store(url)
for i in range(3):
    store.sessions.add_turn(session_id, key_id, f"action {i}", {"text": f"beat {i}"})
    print(i, flush=True)  # acknowledged

@event.listens_for(Session, "after_flush")
def die(session, flush_context):  # the row is written to the database, the transaction is open
    os.kill(os.getpid(), signal.SIGKILL)

# a beat larger than SQLite's page cache, so uncommitted pages spill into the WAL before the kill
store.sessions.add_turn(session_id, key_id, "action 3", {"text": "never acknowledged " * 200_000})
print("survived", flush=True)
"""


def test_kill_9_mid_turn_keeps_earlier_turns_and_no_partial_one(store_url):
    store = Store(store_url)
    store.migrate()
    key = store.create_key("player")[1].id
    sid = store.sessions.create(key, {"premise": "p"}, ttl_s=600)
    store.close()

    proc = subprocess.run(
        [sys.executable, "-c", PLAYER, store_url, sid, key],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PYTHONPATH": SRC, "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    assert proc.stdout.split() == ["0", "1", "2"]

    reopened = Store(store_url)
    record = reopened.sessions.get(sid, key)
    assert [(t.index, t.action, t.beat) for t in record.turns] == [
        (i, f"action {i}", {"text": f"beat {i}"}) for i in range(3)
    ]
    assert reopened.sessions.add_turn(sid, key, "action 3", {"text": "after the crash"}) == 3  # no gap, no clash
    if store_url.startswith("sqlite"):
        with reopened.engine.connect() as conn:
            assert conn.scalar(text("PRAGMA integrity_check")) == "ok"
    reopened.close()
