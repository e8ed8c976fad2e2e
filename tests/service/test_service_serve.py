"""`emotional-engine serve` on the embedded defaults: it starts, loads the real models and answers."""

import os
import subprocess
import sys
import time

import httpx
import pytest

from service_helpers import free_port


@pytest.mark.model
def test_serve_starts_with_the_embedded_defaults(tmp_path):
    port = free_port()
    env = {**os.environ, "EE_DATABASE_URL": f"sqlite:///{tmp_path / 'engine.db'}", "EE_AUTH_ENABLED": "false"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "emotional_engine.cli", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.time() + 240
        while True:
            assert proc.poll() is None, f"serve exited: {proc.stdout.read()}"
            assert time.time() < deadline, "serve was not ready in 240 s"
            try:
                if httpx.get(f"{url}/readyz", timeout=2).json()["status"] == "ready":
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        model = httpx.get(f"{url}/v1/models").json()["data"][0]["engine"]
        assert model["backend"] == "builtin" and len(model["sha256"]) == 64
        text = "We laughed together in the sun. " * 4 + "Then the war took everything we loved. " * 4
        arc = httpx.post(f"{url}/v1/analyze", json={"text": text, "windows": 2}, timeout=60).json()["windows"]
        assert arc[0]["valence"] > arc[1]["valence"]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=30)
    assert "AUTHENTICATION IS OFF" in out  # never silently
