"""Pure ASGI middleware (streaming and disconnects pass through untouched): the request body size
limit, and latency/status metrics by route template."""

from __future__ import annotations

import json
import time

from emotional_engine.service.errors import error_body

_TOO_LARGE = "request_too_large"

HTTP_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


class BodyLimitAndMetrics:
    def __init__(self, app, max_body_bytes: int, metrics):
        self.app, self.max_body_bytes, self.metrics = app, max_body_bytes, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500}
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body_bytes:
            await self._too_large(send, status)
            return self._observe(scope, t0, status["code"])
        seen, over = 0, False

        async def limited_receive():
            nonlocal seen, over
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body_bytes:
                    over = True  # the app fails to parse the cut body; its answer is replaced by a 413
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def recording_send(message):
            if over:
                if message["type"] == "http.response.start":
                    await self._too_large(send, status)
                return
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, limited_receive, recording_send)
        finally:
            self._observe(scope, t0, status["code"])

    async def _too_large(self, send, status) -> None:
        status["code"] = 413
        self.metrics().errors.labels(_TOO_LARGE).inc()
        body = json.dumps(
            error_body(
                _TOO_LARGE, f"the request body is over {self.max_body_bytes} bytes; send a shorter premise or text"
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _observe(self, scope, t0: float, code: int) -> None:
        route = scope.get("route")
        path = getattr(route, "path", "unmatched")
        method = (
            scope["method"] if scope["method"] in HTTP_METHODS else "other"
        )  # any name is accepted: bound the label
        m = self.metrics()
        m.latency.labels(path, method).observe(time.perf_counter() - t0)
        m.requests.labels(path, method, str(code)).inc()
