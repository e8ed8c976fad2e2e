"""Apps the Ray replicas of the tests run (`EngineReplica(app="ray_apps:fake_app", ...)`): the real app on
fake models, imported by the replica processes (tests/ray is on their PYTHONPATH)."""

from __future__ import annotations

from emotional_engine.config import Settings
from emotional_engine.lm.generator import ModelInfo
from emotional_engine.service import create_app
from fakes import FakeEmotion, harbour_generator


def fake_app(delay: float = 0.0, **settings):
    """The service on a fake model that waits `delay` seconds a call, configured by `settings`; with a
    model catalog (`models`), each of its models is such a fake."""
    model = (
        {"load_model": lambda spec: harbour_generator(delay=delay, info=ModelInfo("fake", f"{spec.name}-weights"))}
        if "models" in settings
        else {"generator": harbour_generator(delay=delay)}
    )
    return create_app(
        Settings(_env_file=None, **settings), **model, emotion=FakeEmotion(), candidates=2, check_safety=False
    )
