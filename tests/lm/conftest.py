"""The fake OpenAI-compatible server the backend and model-manager tests talk to, and the runtime's kernels."""

from __future__ import annotations

import threading
from http.server import ThreadingHTTPServer

import pytest
from fake_openai import FakeOpenAI, make_handler


@pytest.fixture(scope="module")
def server():
    state = FakeOpenAI()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(state))
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    state.release.set()
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def fake(server, monkeypatch):
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    server.reset()
    yield server
    server.release.set()


@pytest.fixture(scope="module")
def ee():
    """The C++ kernels' ops (lm/kernels); a test that needs them fails, never skips, where they did not build."""
    from emotional_engine.lm.kernels import ops

    ee = ops()
    if ee is None:
        pytest.fail("the C++ kernels did not build (the log says why); `make install` builds them")
    return ee
