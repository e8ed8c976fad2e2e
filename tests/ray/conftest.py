"""A local Ray instance for the Ray Serve tests (one per test session), and the app deployed on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from service_helpers import free_port

TESTS = Path(__file__).resolve().parents[1]
APP = "ee"


@pytest.fixture(scope="session")
def ray_port():
    """The HTTP port of Ray Serve's proxy on a local Ray (its replicas import the tests' fakes)."""
    try:
        import ray
        from ray import serve
    except ImportError:
        pytest.fail("Ray is not installed: pip install -e '.[ray]' (make test installs it)")
    pythonpath = f"{TESTS / 'ray'}:{TESTS}"
    ray.init(num_cpus=8, include_dashboard=False, runtime_env={"env_vars": {"PYTHONPATH": pythonpath}})
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield port
    serve.shutdown()
    ray.shutdown()


@pytest.fixture
def deploy(ray_port):
    """deploy(replica=..., **settings) -> the base URL of the app on the fake model (ray_apps.fake_app),
    with EngineReplica's deployment options `replica`; deleted after the test."""
    from ray import serve

    from emotional_engine.service.ray_serve import build

    def run(replica: dict | None = None, delay: float = 0.0, **settings) -> str:
        args = {"app": "ray_apps:fake_app", "app_kwargs": {"delay": delay, **settings}, "replica": replica or {}}
        serve.run(build(args), name=APP, route_prefix="/")
        return f"http://127.0.0.1:{ray_port}"

    yield run
    serve.delete(APP)
