"""Secrets in settings never reach a repr, a log line or an error message."""

from __future__ import annotations

import logging

import pytest

from emotional_engine.config import Settings, redacted_url
from emotional_engine.storage.cache import MultiLevelCache
from emotional_engine.storage.connect import make_engine


def test_settings_keep_keys_and_url_passwords_out_of_their_repr():
    s = Settings(
        openai_base_url="http://h:1",
        openai_api_key="sk-hunter2",
        redis_url="redis://:hunter2@127.0.0.1:1/0",
        database_url="postgresql+psycopg://ee:hunter2@db/stories",
        _env_file=None,
    )
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)
    assert s.model_catalog().models[0].openai.key() == "sk-hunter2"  # still usable


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:hunter2@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql+psycopg://ee:hunter2@db:5432/x", "postgresql+psycopg://ee:***@db:5432/x"),
        ("redis://h:6379/0", "redis://h:6379/0"),
    ],
)
def test_redacted_url(url, shown):
    assert redacted_url(url) == shown


def test_an_unreachable_redis_is_logged_without_its_password(caplog):
    cache = MultiLevelCache(16, 60, "redis://:hunter2@127.0.0.1:1/0")
    with caplog.at_level(logging.WARNING):
        cache.get("k")
    assert any("127.0.0.1:1" in r.getMessage() for r in caplog.records)
    assert not any("hunter2" in r.getMessage() for r in caplog.records)
    with pytest.raises(ValueError) as e:
        make_engine("nonsense://ee:hunter2@")
    assert "hunter2" not in str(e.value)
