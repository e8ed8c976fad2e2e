"""The model catalog (configuration and its checks) and the ModelManager: routing, loading on first
use (once), what it describes; an OpenAI-compatible entry against the fake server (conftest.py)."""

from __future__ import annotations

import threading
import time

import pytest
from pydantic import ValidationError

from emotional_engine.config import ModelCatalog, Settings
from emotional_engine.domain import StoryRequest
from emotional_engine.lm.generator import ModelInfo
from emotional_engine.lm.models import ModelManager, UnknownModelError
from emotional_engine.lm.openai_backend import OpenAIGenerator
from emotional_engine.lm.sampling import SamplingParams
from fakes import FakeGenerator

CATALOG = {
    "models": [
        {"name": "small", "builtin": True},
        {"name": "kids", "openai": {"base_url": "http://127.0.0.1:9", "model": "kid-llm"}},
        {"name": "japanese", "openai": {"base_url": "http://127.0.0.1:9", "model": "ja-llm"}},
    ],
    "default": "small",
    "rules": [
        {"audience": "children", "model": "kids"},
        {"culture": "ja", "model": "japanese"},
        {"audience": "teen", "culture": "en-GB", "model": "kids"},
    ],
}


def named(spec) -> FakeGenerator:
    """A stand-in generator whose weights are named after the spec it was loaded for."""
    return FakeGenerator(info=ModelInfo("fake", f"{spec.name}-weights", sha256=spec.name * 4))


def manager(catalog=CATALOG, load=named) -> tuple[ModelManager, list[str]]:
    """A manager over `catalog` and the names it loaded, in order."""
    loads = []

    def counting(spec):
        loads.append(spec.name)
        return load(spec)

    return ModelManager(ModelCatalog.model_validate(catalog), counting), loads


def req(**kw) -> StoryRequest:
    return StoryRequest(premise="A lighthouse keeper finds a letter.", **kw)


# --------------------------------------------------------------------------- configuration


def test_with_nothing_configured_there_is_one_model_the_embedded_one():
    c = Settings(_env_file=None).model_catalog()
    assert [(m.name, m.backend, m.builtin) for m in c.models] == [("embedded", "builtin", True)]
    assert c.default == "embedded" and c.rules == []


def test_the_single_model_settings_become_the_one_entry(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"")
    c = Settings(model_path=tmp_path / "m.gguf", _env_file=None).model_catalog()
    assert [(m.name, m.gguf) for m in c.models] == [("gguf", tmp_path / "m.gguf")]
    c = Settings(openai_base_url="http://h:1", openai_model="m", openai_api_key="sk", _env_file=None).model_catalog()
    (only,) = c.models
    assert (only.name, only.backend, only.openai.model, only.openai.key()) == ("openai", "openai", "m", "sk")


def test_models_come_from_json_in_the_environment(monkeypatch):
    import json

    monkeypatch.setenv("EE_MODELS", json.dumps(CATALOG))
    c = Settings(_env_file=None).model_catalog()
    assert [m.name for m in c.models] == ["small", "kids", "japanese"] and c.default == "small"
    assert [r.model for r in c.rules] == ["kids", "japanese", "kids"]


def test_models_come_from_a_yaml_file(tmp_path):
    (tmp_path / "w.gguf").write_bytes(b"")
    f = tmp_path / "models.yaml"
    f.write_text(f"""
models:
  - name: embedded
    builtin: true
  - name: wide
    gguf: {tmp_path / "w.gguf"}
    runtime: llama-cpp
default: wide
rules:
  - culture: fr
    model: embedded
""")
    c = Settings(models_file=f, _env_file=None).model_catalog()
    assert [(m.name, m.backend) for m in c.models] == [("embedded", "builtin"), ("wide", "llama-cpp")]
    assert c.default == "wide" and c.rules[0].culture == "fr"


def test_the_first_model_is_the_default_unless_one_is_named():
    c = ModelCatalog.model_validate({"models": CATALOG["models"]})
    assert c.default == "small"


@pytest.mark.parametrize(
    "change, message",
    [
        ({"models": CATALOG["models"] + [{"name": "kids", "builtin": True}]}, "repeated: kids"),
        ({"rules": [{"culture": "ja", "model": "nope"}]}, "a rule names model 'nope'"),
        ({"default": "nope"}, "default names model 'nope'"),
        ({"models": [{"name": "x", "gguf": "/nonexistent/x.gguf"}]}, "GGUF file /nonexistent/x.gguf does not exist"),
        ({"models": [{"name": "x"}]}, "needs exactly one of builtin, gguf, openai (got none)"),
        ({"models": [{"name": "x", "builtin": True, "openai": {"base_url": "http://h"}}]}, "(got builtin, openai)"),
        ({"models": [{"name": "x", "builtin": True, "runtime": "llama-cpp"}]}, "runtime llama-cpp needs a gguf file"),
        ({"rules": [{"model": "kids"}]}, "needs an audience, a culture or both"),
        ({"models": [{"name": "has space", "builtin": True}], "default": None, "rules": []}, "name"),
    ],
)
def test_configuration_errors_say_what_is_wrong(change, message):
    with pytest.raises(ValidationError) as e:
        ModelCatalog.model_validate({**CATALOG, **change})
    assert message in str(e.value)


def test_a_broken_models_file_names_the_file(tmp_path):
    f = tmp_path / "models.yaml"
    f.write_text("models:\n  - name: a\n")
    with pytest.raises(ValueError, match=f"models file {f}:.*needs exactly one of"):
        Settings(models_file=f, _env_file=None).model_catalog()
    with pytest.raises(ValueError, match="models file .*missing.yaml"):
        Settings(models_file=tmp_path / "missing.yaml", _env_file=None).model_catalog()


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize(
    "kw, expected",
    [
        ({}, "small"),  # no rule matches: the default
        ({"audience": "children"}, "kids"),
        ({"culture": "ja-JP"}, "japanese"),  # a language rule covers its tags
        ({"audience": "children", "culture": "ja-JP"}, "kids"),  # the first matching rule wins
        ({"audience": "teen", "culture": "en-GB"}, "kids"),  # both parts of a rule match
        ({"audience": "teen", "culture": "en-US"}, "small"),  # an exact tag does not cover its siblings
        ({"audience": "adult", "culture": "en-GB"}, "small"),
        ({"audience": "children", "model": "small"}, "small"),  # a named model beats every rule
        ({"culture": "ja-JP", "model": "kids"}, "kids"),
    ],
)
def test_explicit_beats_rule_beats_default(kw, expected):
    m, _ = manager()
    assert m.choose(req(**kw)) == expected


def test_an_unknown_model_names_the_available_ones():
    m, _ = manager()
    with pytest.raises(UnknownModelError) as e:
        m.choose(req(model="huge"))
    assert e.value.available == ["small", "kids", "japanese"]
    assert str(e.value) == "no model 'huge' is configured; available: small, kids, japanese"


# --------------------------------------------------------------------------- loading


def test_models_load_on_first_use_and_only_the_one_used():
    m, loads = manager()
    assert loads == [] and not any(s.info for s in m.describe())
    g = m.get(m.choose(req(audience="children")))
    assert g.info.name == "kids-weights" and loads == ["kids"]
    assert m.get("kids") is g and loads == ["kids"]  # loaded once
    assert {s.spec.name: s.info is not None for s in m.describe()} == {"small": False, "kids": True, "japanese": False}


def test_concurrent_first_uses_load_once():
    def slow(spec):
        time.sleep(0.2)  # both threads arrive while the first load is running
        return named(spec)

    m, loads = manager(load=slow)
    got, start = [], threading.Barrier(4)

    def use(name):
        start.wait()
        got.append(m.get(name))

    threads = [threading.Thread(target=use, args=(n,)) for n in ("kids", "kids", "kids", "small")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(loads) == ["kids", "small"]
    assert len({id(g) for g in got if g.info.name == "kids-weights"}) == 1


async def test_aget_loads_off_the_event_loop():
    loader_threads = []

    def load(spec):
        loader_threads.append(threading.current_thread())
        return named(spec)

    m, _ = manager(load=load)
    g = await m.aget("japanese")
    assert g.info.name == "japanese-weights" and loader_threads != [threading.current_thread()]
    assert await m.aget("japanese") is g


def test_describe_gives_default_rules_and_details_once_loaded():
    m, _ = manager()
    before = {s.spec.name: s for s in m.describe()}
    assert before["small"].default and not before["kids"].default
    assert before["kids"].rules == [{"audience": "children"}, {"audience": "teen", "culture": "en-GB"}]
    assert before["japanese"].rules == [{"culture": "ja"}] and before["small"].rules == []
    assert before["small"].info is None
    m.get("small")
    after = {s.spec.name: s for s in m.describe()}
    assert after["small"].info.sha256 == "small" * 4 and after["kids"].info is None


def test_identities_differ_between_models_even_with_the_same_weights():
    m, _ = manager(load=lambda spec: FakeGenerator(info=ModelInfo("fake", "w", sha256="a" * 64)))
    m.get("kids"), m.get("japanese")
    a, b = m.identity("kids"), m.identity("japanese")
    assert a != b and a["name"] == "kids" and a["base_url"] == "http://127.0.0.1:9"


def test_a_single_given_generator_is_the_embedded_default():
    g = FakeGenerator()
    m = ModelManager.single(g)
    assert m.default == "embedded" and m.choose(req(audience="children")) == "embedded"
    assert m.get("embedded") is g


# --------------------------------------------------------------------------- an OpenAI-compatible model


async def test_an_openai_entry_talks_to_its_server(fake, monkeypatch):
    monkeypatch.setenv("TEST_REMOTE_KEY", "sk-remote")
    catalog = {
        "models": [
            {"name": "embedded", "builtin": True},
            {
                "name": "remote",
                "openai": {"base_url": f"{fake.url}/v1", "model": "served-llm", "api_key_env": "TEST_REMOTE_KEY"},
            },
        ],
        "rules": [{"culture": "fr", "model": "remote"}],
    }
    m = ModelManager.from_settings(Settings(models=catalog, _env_file=None))
    g = await m.aget(m.choose(req(culture="fr-FR")))
    try:
        assert isinstance(g, OpenAIGenerator) and not m.is_loaded("embedded")
        done = await g.complete("Once", SamplingParams(max_tokens=8))
        assert done.text == "Once upon a time, é🙂"
        (sent,) = fake.requests
        assert sent["body"]["model"] == "served-llm" and sent["headers"]["Authorization"] == "Bearer sk-remote"
        assert m.identity("remote")["base_url"] == f"{fake.url}/v1"
    finally:
        await g.aclose()


def test_with_a_cap_the_least_recently_used_model_other_than_the_default_is_unloaded_and_closed():
    loads = []

    def counting(spec):
        loads.append(spec.name)
        return named(spec)

    m = ModelManager(ModelCatalog.model_validate(CATALOG), counting, max_loaded=2)
    small, kids = m.get("small"), m.get("kids")
    m.get("small")  # the default is used most recently: still never the one unloaded
    japanese = m.get("japanese")
    assert [n for n in ("small", "kids", "japanese") if m.is_loaded(n)] == ["small", "japanese"]
    for _ in range(100):  # closed in a thread of its own
        if getattr(kids, "aclosed", False):
            break
        time.sleep(0.01)
    assert kids.aclosed and not getattr(small, "aclosed", False) and not getattr(japanese, "aclosed", False)
    m.get("kids")  # used again: loaded again, and now japanese is the least recently used
    assert loads == ["small", "kids", "japanese", "kids"]
    assert not m.is_loaded("japanese") and m.is_loaded("kids") and m.is_loaded("small")


def test_without_a_cap_every_used_model_stays_loaded():
    m, loads = manager()
    for name in ("small", "kids", "japanese", "kids"):
        m.get(name)
    assert loads == ["small", "kids", "japanese"]
