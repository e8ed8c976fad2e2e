"""The Engine with several language models: one `Deps` per model, each with its own steering table,
the emotion model and the rest shared; a request's model loads only when it is used."""

from __future__ import annotations

from emotional_engine.config import ModelCatalog, Settings
from emotional_engine.domain import StoryRequest
from emotional_engine.emotion import steering
from emotional_engine.engine import Engine
from emotional_engine.lm.models import ModelManager
from fakes import FakeEmotion, FakeGenerator, ModelInfo

CATALOG = ModelCatalog.model_validate(
    {
        "models": [
            {"name": "steered", "builtin": True},
            {"name": "other", "builtin": True},
            {"name": "remote", "openai": {"base_url": "http://127.0.0.1:9"}},
        ],
        "rules": [{"culture": "ja", "model": "other"}],
    }
)


def vocab_generator(name: str) -> FakeGenerator:
    """Takes logits processors and has a vocabulary of its own (as the builtin runtime does)."""
    return FakeGenerator(
        "Once upon a time.",
        logits_processors=True,
        info=ModelInfo("fake", name, sha256=name[0] * 64),
        vocabulary=[f"{name}-{i}" for i in range(4)],
    )


def engine(monkeypatch, tmp_path):
    tables = []

    def load_or_build(tokens, model, head_path, cache_dir):
        tables.append(tokens)
        return ("table", tuple(tokens))

    monkeypatch.setattr(steering, "load_or_build", load_or_build)
    loads = []

    def load(spec):
        loads.append(spec.name)
        return FakeGenerator("Once.") if spec.openai else vocab_generator(spec.name)

    e = Engine(
        Settings(cache_dir=tmp_path, _env_file=None),
        models=ModelManager(CATALOG, load),
        emotion=FakeEmotion(),
        check_safety=False,
    )
    return e, loads, tables


async def test_each_model_gets_its_own_deps_and_steering_table(monkeypatch, tmp_path):
    e, loads, tables = engine(monkeypatch, tmp_path)
    assert loads == []
    steered = await e.adeps(StoryRequest(premise="A fox.", culture="en-US"))
    other = await e.adeps(StoryRequest(premise="A fox.", culture="ja-JP"))
    assert loads == ["steered", "other"]
    assert steered.generator.info.name == "steered" and other.generator.info.name == "other"
    assert steered.steering == ("table", tuple(steered.generator.vocabulary()))
    assert other.steering == ("table", tuple(other.generator.vocabulary())) and len(tables) == 2
    assert steered.emotion is other.emotion and steered.embed is other.embed  # shared, loaded once
    assert await e.adeps(StoryRequest(premise="A fox.", model="steered")) is steered  # built once per model
    assert loads == ["steered", "other"] and len(tables) == 2


async def test_a_model_without_logits_processors_has_no_steering_table(monkeypatch, tmp_path):
    e, loads, tables = engine(monkeypatch, tmp_path)
    remote = await e.adeps(StoryRequest(premise="A fox.", model="remote"))
    assert remote.steering is None and tables == [] and loads == ["remote"]


async def test_a_given_generator_is_the_only_model():
    g = FakeGenerator("Once.")
    e = Engine(Settings(_env_file=None), generator=g, emotion=FakeEmotion(), check_safety=False)
    assert e.generator is g and (await e.adeps(StoryRequest(premise="A fox.", audience="children"))).generator is g


async def test_a_request_s_model_is_chosen_once_and_kept(monkeypatch, tmp_path):
    """`pin_model` names the routed model in the request; writing it (deps, the story) reads that name
    and never routes again, so the rules cannot pick another model halfway."""
    e, loads, _ = engine(monkeypatch, tmp_path)
    routed = []
    choose = e.models.choose
    monkeypatch.setattr(e.models, "choose", lambda request: routed.append(request) or choose(request))
    pinned = e.pin_model(StoryRequest(premise="A fox.", culture="ja-JP"))
    assert pinned.model == "other" and len(routed) == 1
    assert (await e.adeps(pinned)).generator.info.name == "other"
    assert len(routed) == 1 and loads == ["other"]
