"""`emotional-engine generate --model-name` / `--model` against a configured catalog (no model loads)."""

import json

import pytest
from typer.testing import CliRunner

from emotional_engine.cli import app
from emotional_engine.config import get_settings
from emotional_engine.engine import Engine
from emotional_engine.lm.gguf import ModelFileError

CATALOG = {
    "models": [
        {"name": "plain", "builtin": True},
        {"name": "remote", "openai": {"base_url": "http://127.0.0.1:9", "model": "m"}},
    ],
    "rules": [{"audience": "children", "model": "remote"}],
}
ARGS = ["generate", "--premise", "A fox finds a lantern.", "--words", "100"]


@pytest.fixture
def chosen(monkeypatch):
    """The catalog in EE_MODELS; `generate` records the model the engine chose and its catalog, then stops."""
    monkeypatch.setenv("EE_MODELS", json.dumps(CATALOG))
    get_settings.cache_clear()
    seen = []

    def generate(self, request, on_event=None):
        seen.append((self.models.choose(request), [m.name for m in self.models.catalog.models]))
        raise ModelFileError("x.gguf", "stopped by the test")

    monkeypatch.setattr(Engine, "generate", generate)
    yield seen
    get_settings.cache_clear()


def test_model_name_picks_a_configured_model(chosen):
    result = CliRunner().invoke(app, [*ARGS, "--model-name", "remote"])
    assert result.exit_code == 2 and "stopped by the test" in result.stderr
    assert chosen == [("remote", ["plain", "remote"])]


def test_without_a_name_the_rules_then_the_default_choose(chosen):
    CliRunner().invoke(app, [*ARGS, "--audience", "children"])
    CliRunner().invoke(app, ARGS)
    assert [c[0] for c in chosen] == ["remote", "plain"]


def test_an_unknown_name_fails_before_anything_loads(chosen):
    result = CliRunner().invoke(app, [*ARGS, "--model-name", "huge"])
    assert result.exit_code == 2 and chosen == []
    assert "no model 'huge' is configured; available: plain, remote" in result.stderr


def test_play_takes_a_model_name_and_refuses_an_unknown_one(chosen, monkeypatch):
    picked = []

    async def session(self, request, turns=12):
        picked.append(self.models.choose(request))
        raise ModelFileError("x.gguf", "stopped by the test")

    monkeypatch.setattr(Engine, "session", session)
    play = ["play", "--premise", "A fox finds a lantern."]
    result = CliRunner().invoke(app, [*play, "--model-name", "huge"])
    assert result.exit_code == 2 and "no model 'huge' is configured" in result.stderr and picked == []
    CliRunner().invoke(app, [*play, "--model-name", "remote"], input="I wait.\n")
    assert picked == ["remote"]


def test_model_replaces_the_catalog_with_that_file(chosen, tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"")
    result = CliRunner().invoke(app, [*ARGS, "--model", str(tmp_path / "m.gguf")])
    assert result.exit_code == 2 and chosen == [("gguf", ["gguf"])]
    result = CliRunner().invoke(app, [*ARGS, "--model", str(tmp_path / "m.gguf"), "--model-name", "plain"])
    assert result.exit_code == 2 and "not both" in result.stderr


def test_a_broken_catalog_is_reported(monkeypatch):
    monkeypatch.setenv("EE_MODELS", json.dumps({**CATALOG, "rules": [{"culture": "ja", "model": "nope"}]}))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ARGS)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2 and "a rule names model 'nope', which is not configured" in result.stderr


def test_serve_refuses_a_broken_catalog_with_its_reason(monkeypatch, tmp_path):
    (tmp_path / "models.yaml").write_text("models:\n  - name: a\n    gguf: /nonexistent/a.gguf\n")
    monkeypatch.setenv("EE_MODELS_FILE", str(tmp_path / "models.yaml"))
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["serve"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 2 and "GGUF file /nonexistent/a.gguf does not exist" in result.stderr


def test_serve_refuses_to_run_without_authentication_on_a_public_address(monkeypatch):
    import uvicorn

    started = []
    monkeypatch.setattr(uvicorn, "run", lambda api, **kw: started.append(kw["host"]))
    monkeypatch.setenv("EE_AUTH_ENABLED", "false")
    get_settings.cache_clear()
    try:
        refused = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
        local = CliRunner().invoke(app, ["serve", "--host", "127.0.0.1"])
        monkeypatch.setenv("EE_AUTH_OFF_ON_PUBLIC_ADDRESS", "true")
        get_settings.cache_clear()
        forced = CliRunner().invoke(app, ["serve", "--host", "0.0.0.0"])
    finally:
        get_settings.cache_clear()
    assert refused.exit_code == 2 and "not a loopback address" in refused.stderr
    assert local.exit_code == 0 and forced.exit_code == 0
    assert started == ["127.0.0.1", "0.0.0.0"]
