"""The service on Ray Serve, for more than one process or machine (`emotional-engine serve --ray`,
`serve run deploy/serve.yaml`). Ray is an optional extra: `pip install 'emotional-engine[ray]'`.

Two deployments:

- `EngineReplica`, with replicas: each runs the whole app of `create_app` (the same routes, keys, limits,
  metrics and jobs), holding its models and KV caches; the runtime batches its requests. Redis and
  PostgreSQL are the state the replicas share (rate limits, cache L2, stories, sessions, job leases).
- `Gateway`, the HTTP ingress: it forwards each request to a replica and streams the answer back. A
  session's requests go to one replica while it lives (`SessionAffinityRouter`), so its KV cache is warm;
  a request naming a model goes to a replica that has it loaded (Ray's model multiplexing). A full queue
  is a 503 with Retry-After, and a replica that dies mid-stream ends the stream with a `replica_lost`
  error event, never a silent cut.
"""

import asyncio
import hashlib
import importlib
import json
import logging
import os
import re
from collections.abc import AsyncIterator

import ray.exceptions
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse
from ray import serve
from ray.serve._private.request_router.pow_2_router import (  # Ray's default router (ray is pinned)
    PowerOfTwoChoicesRequestRouter,
)
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from ray.serve.request_router import PendingRequest, RunningReplica
from starlette.responses import Response

from emotional_engine.lm.models import UnknownModelError
from emotional_engine.service.errors import OPENAI_ROUTES, error_body, error_response

log = logging.getLogger(__name__)

DEFAULT_APP = "emotional_engine.service.app:create_app"
REPLICA_HEADER = b"x-ee-replica"  # which replica answered (operators, and the scale benchmark's affinity share)
SESSION_PATH = re.compile(r"^/v1/sessions/([^/]+)")
# a replica that died or cannot be reached: the request did not finish there
REPLICA_GONE = (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError)
MAX_MODELS_PER_REPLICA = 4  # Ray's multiplexing bookkeeping; EE_MAX_LOADED_MODELS bounds what a replica holds


def affinity_key(method: str, path: str, headers, body: bytes) -> str | None:
    """What ties a request to the replica that holds its live session: the session id of a session route;
    for an OpenAI chat, the caller and the conversation's opening (the same in every turn of it)."""
    if m := SESSION_PATH.match(path):
        return "session:" + m.group(1)
    if method == "POST" and path == "/v1/chat/completions":
        try:
            messages = json.loads(body).get("messages") or []
        except (ValueError, AttributeError):
            return None
        opening = []  # up to the first user message: what every later turn of the chat begins with
        for m in messages:
            if isinstance(m, dict):
                opening.append(m)
                if m.get("role") == "user":
                    break
        ident = json.dumps([headers.get("authorization", ""), opening], sort_keys=True, default=str)
        return "chat:" + hashlib.sha256(ident.encode()).hexdigest()[:24]
    return None


def model_named(body: bytes) -> str | None:
    """The model a JSON body names (stories, jobs, completions), for multiplexing; None for the default."""
    if not body.startswith(b"{"):
        return None
    try:
        model = json.loads(body).get("model")
    except ValueError:
        return None
    return model if isinstance(model, str) and model else None


def rendezvous_rank(key: str, replicas: list) -> list:
    """`replicas` in the order a key prefers them (highest random weight): the first while it lives, and
    when one goes or comes only the keys that preferred it move."""
    weight = lambda r: hashlib.blake2b(f"{key}|{r.replica_id.unique_id}".encode(), digest_size=8).digest()  # noqa: E731
    return sorted(replicas, key=weight, reverse=True)


class SessionAffinityRouter(PowerOfTwoChoicesRequestRouter):
    """Ray's power-of-two-choices router, but a request with an `affinity` key goes to the replica the key
    ranks first, or the next when that one is full or gone (its session is then rebuilt from the store)."""

    async def choose_replicas(
        self, candidate_replicas: list[RunningReplica], pending_request: PendingRequest | None = None
    ) -> list[list[RunningReplica]]:
        key = pending_request.kwargs.get("affinity") if pending_request is not None else None
        if not key:
            return await super().choose_replicas(candidate_replicas, pending_request)
        return [[r] for r in rendezvous_rank(key, candidate_replicas)]


_running: set[asyncio.Task] = set()  # requests run by asgi_call (a reference keeps each task alive)


def load_app_factory(path: str):
    """`module:function` -> the function (it returns the FastAPI app a replica runs)."""
    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


async def asgi_call(app, request: dict, extra_headers: list) -> AsyncIterator:
    """Run one HTTP request through an ASGI app in this process: yields the response's start
    ({"status", "headers"}) and then its body's chunks as they are sent (a stream streams)."""
    sent: asyncio.Queue = asyncio.Queue()
    gone = asyncio.Event()
    body_given = False

    async def receive():
        nonlocal body_given
        if not body_given:
            body_given = True
            return {"type": "http.request", "body": request["body"], "more_body": False}
        await gone.wait()  # the caller left, or the response ended
        return {"type": "http.disconnect"}

    async def run():
        try:
            await app(scope, receive, sent.put)
        except Exception:  # the app answered 500 already (its error middleware), or never started
            log.exception("request failed in the replica")
        finally:
            sent.put_nowait(None)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": request["method"],
        "scheme": "http",
        "path": request["path"],
        "raw_path": request["path"].encode(),
        "query_string": request["query"],
        "root_path": "",
        "headers": request["headers"],
        "client": request["client"],
        "server": ("ray-serve", 8000),
    }
    task = asyncio.create_task(run())
    _running.add(task)
    task.add_done_callback(_running.discard)
    started = False
    try:
        while (message := await sent.get()) is not None:
            if message["type"] == "http.response.start":
                started = True
                yield {"status": message["status"], "headers": list(message.get("headers", [])) + extra_headers}
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    yield message["body"]
                if not message.get("more_body", False):
                    break
        if not started:
            body = json.dumps(error_body("internal", "the request failed in the replica; it is logged")).encode()
            yield {"status": 500, "headers": [(b"content-type", b"application/json")] + extra_headers}
            yield body
    finally:
        # the caller left or the answer is whole: a stream sees the disconnect and stops; other work
        # finishes (and is kept) as under uvicorn, which does not cancel a request whose client left
        gone.set()


@serve.deployment(
    name="EngineReplica",
    request_router_config={"request_router_class": SessionAffinityRouter},
    max_ongoing_requests=64,
    max_queued_requests=256,
    health_check_period_s=5,
    health_check_timeout_s=30,
    graceful_shutdown_timeout_s=30,
)
class EngineReplica:
    """One replica: the whole app, its lifespan run here (models loaded, store migrated, jobs taken over)."""

    async def __init__(self, app: str = DEFAULT_APP, app_kwargs: dict | None = None):
        self.app = load_app_factory(app)(**(app_kwargs or {}))
        self._lifespan = self.app.router.lifespan_context(self.app)
        await self._lifespan.__aenter__()
        self.name = serve.get_replica_context().replica_id.to_full_id_str()  # its actor name, namespace "serve"
        self._header = [(REPLICA_HEADER, self.name.encode())]

    @serve.multiplexed(max_num_models_per_replica=MAX_MODELS_PER_REPLICA)
    async def model(self, name: str) -> str:
        """Load model `name` here (Ray then routes the requests naming it to this replica). Ray keeps the
        name, not the generator: what is loaded stays the ModelManager's to unload."""
        await self.app.state.service.engine.models.aget(name)
        return name

    async def handle(self, request: dict, affinity: str | None = None) -> AsyncIterator:
        """The answer to one forwarded HTTP request: its start, then its body's chunks."""
        if model := serve.get_multiplexed_model_id():
            try:
                await self.model(model)
            except UnknownModelError:  # the route answers it: 422 listing the configured ones
                pass
            except Exception as e:  # the route tries it again and answers the failure as it does without Ray
                log.warning("model %s did not load ahead of its request: %s", model, e)
        async for part in asgi_call(self.app, request, self._header):
            yield part

    async def check_health(self) -> None:
        if not self.app.state.service.model_loaded:
            raise RuntimeError("the models are not loaded")

    async def __del__(self):
        """Ray's shutdown of the replica: the app's own (job leases released, connections closed), once."""
        lifespan, self._lifespan = getattr(self, "_lifespan", None), None
        if lifespan is not None:
            await lifespan.__aexit__(None, None, None)


gateway = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)  # the replicas answer /docs


@serve.deployment(name="Gateway", max_ongoing_requests=1024)
@serve.ingress(gateway)
class Gateway:
    """The HTTP ingress: every request forwarded to a replica, its answer streamed back."""

    def __init__(self, engine: DeploymentHandle):
        self.engine = engine

    @gateway.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def forward(self, request: Request, path: str) -> Response:
        body = await request.body()
        forwarded = {
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query.encode(),
            "headers": list(request.headers.raw),
            "body": body,
            "client": (request.client.host, request.client.port) if request.client else None,
        }
        options = {"stream": True}
        if model := model_named(body):
            options["multiplexed_model_id"] = model
        key = affinity_key(request.method, request.url.path, request.headers, body)
        parts = self.engine.options(**options).handle.remote(forwarded, affinity=key)
        try:
            head = await parts.__anext__()
        except BackPressureError as e:
            retry = e.args[3] if len(e.args) > 3 and e.args[3] else 1
            return error_response(503, "overloaded", "every replica is at capacity; retry shortly", retry_after=retry)
        except REPLICA_GONE:
            return error_response(503, "replica_lost", "the replica serving this request stopped; retry", 1)
        response = StreamingResponse(self._rest(parts, head, request.url.path), status_code=head["status"])
        response.raw_headers = head["headers"]
        return response

    @staticmethod
    async def _rest(parts, head: dict, path: str) -> AsyncIterator[bytes]:
        """The body after its start; a stream whose replica dies ends with an error event the client can
        act on: nothing of the unfinished turn or story was kept, so it is sent again."""
        try:
            async for chunk in parts:
                yield chunk
        except REPLICA_GONE:
            if not any(v.startswith(b"text/event-stream") for k, v in head["headers"] if k.lower() == b"content-type"):
                raise
            message = (
                "the replica serving this stream stopped; what it was writing was not kept. Send the request "
                "again (a session's turns so far are kept: GET /v1/sessions/{id} shows them)"
            )
            data = json.dumps(error_body("replica_lost", message))
            yield (f"data: {data}\n\n" if path in OPENAI_ROUTES else f"event: error\ndata: {data}\n\n").encode()


def build(args: dict | None = None):
    """The application (`serve run emotional_engine.service.ray_serve:build`). `args` (all optional):
    `app` ("module:function" returning the FastAPI app; default create_app, configured by EE_
    environment variables), `app_kwargs`, and `replica` (EngineReplica's deployment options, such as
    num_replicas or autoscaling_config)."""
    args = args or {}
    engine = EngineReplica.options(**args.get("replica", {})).bind(args.get("app", DEFAULT_APP), args.get("app_kwargs"))
    return Gateway.bind(engine)


# A replica batches up to EE_GENERATION_SLOTS (16) generations; at 8 ongoing requests each, it still has
# room for a burst while the autoscaler adds one (benchmarks/scale.py measures how long that takes).
TARGET_ONGOING_REQUESTS = 8


def autoscaling(min_replicas: int, max_replicas: int) -> dict:
    """EngineReplica's options: Ray's autoscaler on ongoing requests per replica, within the bounds."""
    return {
        "autoscaling_config": {
            "min_replicas": min_replicas,
            "max_replicas": max_replicas,
            "target_ongoing_requests": TARGET_ONGOING_REQUESTS,
            # Ray's default, 30 s, leaves a load step queueing for half a minute; it must exceed 10 s, how
            # often a replica reports its load
            "look_back_period_s": 15,
            "upscale_delay_s": 5,
            "downscale_delay_s": 120,
        }
    }


def run(host: str, port: int, replica: dict) -> None:
    """Serve on Ray until stopped: a local Ray, or the cluster at RAY_ADDRESS. The replicas get this
    process's EE_ settings."""
    env = {k: v for k, v in os.environ.items() if k.startswith("EE_")}
    ray.init(address=os.environ.get("RAY_ADDRESS"), runtime_env={"env_vars": env})
    serve.start(http_options={"host": host, "port": port})
    serve.run(build({"replica": replica}), name="emotional-engine", route_prefix="/", blocking=True)
