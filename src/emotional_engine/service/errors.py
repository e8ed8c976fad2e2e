"""Every error leaves as `{"error": {"type", "message", "code", "param"}}` (OpenAI's error shape, `code` the
same as `type`), with a message a person can act on; no stack traces."""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from emotional_engine.lm.models import UnknownModelError

log = logging.getLogger(__name__)


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        type: str,
        message: str,
        retry_after: float | None = None,
        incident: str | None = None,
        param: str | None = None,
    ):
        super().__init__(message)
        self.status, self.type, self.message = status, type, message
        self.retry_after, self.incident, self.param = retry_after, incident, param


class ModelFailedError(Exception):
    """The language model (or its server) raised while generating: a fault on our side that may pass,
    answered with 503 and Retry-After rather than 500, and retried by jobs."""


def model_failed(incident: str) -> tuple[str, str]:
    """(type, message) told to the client when the model failed."""
    message = f"the language model failed on this request (incident {incident}); it is logged, retry shortly"
    return "model_failed", message


def not_found(what: str, id: str) -> ApiError:
    return ApiError(404, "not_found", f"no {what} {id!r} for this API key")


def new_incident() -> str:
    """An id that ties what a client is told to the detail in the log."""
    return uuid.uuid4().hex[:12]


def error_body(type: str, message: str, incident: str | None = None, param: str | None = None) -> dict:
    error = {"type": type, "message": message, "code": type, "param": param}
    return {"error": error | ({"incident": incident} if incident else {})}


def error_response(
    status: int,
    type: str,
    message: str,
    retry_after: float | None = None,
    incident: str | None = None,
    param: str | None = None,
) -> JSONResponse:
    headers = {"Retry-After": str(max(1, round(retry_after)))} if retry_after is not None else None
    return JSONResponse(error_body(type, message, incident, param), status_code=status, headers=headers)


def _validation_message(e: RequestValidationError) -> str:
    parts = []
    for err in e.errors():
        loc = ".".join(str(x) for x in err["loc"] if x != "body") or "body"
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


OPENAI_ROUTES = ("/v1/chat/completions", "/v1/completions")

_STATUS_TYPES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
}


def install(app: FastAPI, on_error=lambda type: None) -> None:
    """Exception handlers; `on_error(type)` counts each error for the metrics."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError):
        on_error(e.type)
        return error_response(e.status, e.type, e.message, e.retry_after, e.incident, e.param)

    @app.exception_handler(UnknownModelError)  # named by a request, or by a stored session or job
    async def unknown_model(request: Request, e: UnknownModelError):
        on_error("unknown_model")
        return error_response(422, "unknown_model", f"model: {e}")

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError):
        on_error("invalid_request")
        # OpenAI's routes answer a malformed request with 400, as its clients expect
        status = 400 if request.url.path in OPENAI_ROUTES else 422
        first = next((str(x) for x in e.errors()[0]["loc"] if x != "body"), None) if e.errors() else None
        return error_response(status, "invalid_request", _validation_message(e), param=first)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, e: StarletteHTTPException):
        type = _STATUS_TYPES.get(e.status_code, "http_error")
        on_error(type)
        message = e.detail if isinstance(e.detail, str) else str(e.detail)
        if e.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path}; see /docs for the API"
        return error_response(e.status_code, type, message)

    @app.exception_handler(ModelFailedError)
    async def model_error(request: Request, e: ModelFailedError):
        incident = new_incident()
        log.error("model failed (incident %s) on %s %s", incident, request.method, request.url.path, exc_info=e)
        type, message = model_failed(incident)
        on_error(type)
        return error_response(503, type, message, retry_after=1, incident=incident)

    @app.exception_handler(Exception)
    async def internal(request: Request, e: Exception):
        incident = new_incident()
        log.exception("unhandled error (incident %s) on %s %s", incident, request.method, request.url.path)
        on_error("internal")
        return error_response(
            500,
            "internal",
            f"the server failed on this request (incident {incident}); "
            "it is logged, try again or report the incident id",
            incident=incident,
        )
