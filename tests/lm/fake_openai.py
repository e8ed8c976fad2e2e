"""A fake OpenAI-compatible server (completions and chat, streaming), run on 127.0.0.1 by conftest.py."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler


class FakeOpenAI:
    """State shared with the handler threads; tests set `mode` and friends before a request."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.requests: list[dict] = []  # {"path", "headers", "body"}
        self.mode = "ok"  # ok | error | stall | slow | truncated | midstream_error
        self.pieces = ["Once", " upon", " a", " time", ", é🙂"]
        self.finish_reason = "stop"
        self.usage: dict | None = {
            "prompt_tokens": 11,
            "completion_tokens": 5,
            "total_tokens": 16,
            "prompt_tokens_details": {"cached_tokens": 3},
        }
        self.error_status = 401
        self.error_body = {
            "error": {
                "message": "Incorrect API key provided: sk-wrong",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        }
        self.release = threading.Event()  # lets a stalled handler go
        self.disconnected = threading.Event()  # set when a write to the client fails
        self.slow_chunks_sent = 0


def _chunk(chat: bool, text: str | None, finish: str | None, role: bool = False) -> dict:
    if chat:
        delta = {} if text is None else {"content": text}
        if role:
            delta["role"] = "assistant"
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": "fake",
            "choices": [choice],
        }
    choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
    return {"id": "cmpl-1", "object": "text_completion", "created": 1700000000, "model": "fake", "choices": [choice]}


def make_handler(state: FakeOpenAI):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def _send_event(self, obj) -> None:
            data = obj if isinstance(obj, str) else json.dumps(obj)
            self.wfile.write(f"data: {data}\n\n".encode())
            self.wfile.flush()

        def do_POST(self):
            n = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(n) or b"{}")
            state.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            if self.path not in ("/v1/completions", "/v1/chat/completions"):
                self.send_response(404)
                self.end_headers()
                return
            if state.mode == "error":
                raw = json.dumps(state.error_body).encode()
                self.send_response(state.error_status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)
                return
            chat = self.path == "/v1/chat/completions"
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.end_headers()
            try:
                if chat:
                    self._send_event(_chunk(True, "", None, role=True))
                if state.mode == "stall":
                    self._send_event(_chunk(chat, state.pieces[0], None))
                    state.release.wait(5)
                    return
                if state.mode == "slow":
                    for i in range(500):
                        self._send_event(_chunk(chat, f"w{i} ", None))
                        state.slow_chunks_sent += 1
                        time.sleep(0.01)
                    return
                for p in state.pieces:
                    self._send_event(_chunk(chat, p, None))
                if state.mode == "truncated":
                    return  # connection closes with no finish reason and no [DONE]
                if state.mode == "midstream_error":
                    self._send_event({"error": {"message": "CUDA out of memory", "code": 500}})
                    return
                self._send_event(_chunk(chat, None if chat else "", state.finish_reason))
                if state.usage is not None and body.get("stream_options", {}).get("include_usage"):
                    self._send_event(
                        {
                            "id": "x",
                            "object": "chat.completion.chunk" if chat else "text_completion",
                            "created": 1700000000,
                            "model": "fake",
                            "choices": [],
                            "usage": state.usage,
                        }
                    )
                self._send_event("[DONE]")
            except (BrokenPipeError, ConnectionResetError):
                state.disconnected.set()

    return Handler
