"""`emotional-engine keys create|list|revoke` against a real database."""

import pytest
from typer.testing import CliRunner

from emotional_engine.cli import app
from emotional_engine.config import get_settings
from emotional_engine.storage import Store

runner = CliRunner()


@pytest.fixture
def database(store_url, monkeypatch):
    monkeypatch.setenv("EE_DATABASE_URL", store_url)
    get_settings.cache_clear()
    yield store_url
    get_settings.cache_clear()


def test_create_list_revoke(database):
    created = runner.invoke(app, ["keys", "create", "writers tool"])
    assert created.exit_code == 0, created.output
    plain = created.stdout.strip()
    assert plain.startswith("ee_") and len(plain) == 51  # only the key on stdout, for scripts
    assert "shown only once" in created.stderr and "writers tool" in created.stderr
    store = Store(database)
    info = store.verify_key(plain)
    assert info is not None and info.name == "writers tool"

    listed = runner.invoke(app, ["keys", "list"])
    assert listed.exit_code == 0
    assert info.id in listed.stdout and info.prefix in listed.stdout and "active" in listed.stdout
    assert plain not in listed.stdout

    revoked = runner.invoke(app, ["keys", "revoke", info.prefix])
    assert revoked.exit_code == 0, revoked.output
    assert store.verify_key(plain) is None
    assert "revoked" in runner.invoke(app, ["keys", "list"]).stdout
    again = runner.invoke(app, ["keys", "revoke", info.prefix])
    assert again.exit_code == 1 and "no active key" in again.stderr
    store.close()


def test_list_with_no_keys_says_how_to_create_one(database):
    result = runner.invoke(app, ["keys", "list"])
    assert result.exit_code == 0 and "keys create" in result.stdout


def test_an_empty_name_is_refused(database):
    result = runner.invoke(app, ["keys", "create", "  "])
    assert result.exit_code == 2 and "name" in result.stderr


def test_an_unreachable_database_is_named(monkeypatch):
    monkeypatch.setenv("EE_DATABASE_URL", "postgresql+psycopg://postgres:secret@127.0.0.1:1/none")
    get_settings.cache_clear()
    result = runner.invoke(app, ["keys", "list"])
    get_settings.cache_clear()
    assert result.exit_code == 1
    assert "cannot open the database at postgresql+psycopg://postgres:***@127.0.0.1:1/none" in result.stderr
    assert "secret" not in result.stderr


def test_the_default_database_is_a_sqlite_file_in_the_cache_dir(cache_dir, monkeypatch):
    monkeypatch.delenv("EE_DATABASE_URL", raising=False)
    get_settings.cache_clear()
    result = runner.invoke(app, ["keys", "create", "local"])
    get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert (cache_dir / "engine.db").exists()
