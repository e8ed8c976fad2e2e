"""Persistence and caching for the HTTP service: `Store` (SQL through SQLAlchemy, Alembic
migrations shipped in the package) and `MultiLevelCache` (in-process, Redis, SQL)."""

from emotional_engine.storage.cache import MultiLevelCache, is_cacheable, request_cache_key
from emotional_engine.storage.connect import default_database_url
from emotional_engine.storage.db import Store
from emotional_engine.storage.records import (
    ApiKeyInfo,
    CapReachedError,
    JobRecord,
    NotFoundError,
    SessionExpiredError,
    SessionRecord,
    TurnRecord,
    Usage,
    UsageWindow,
)

__all__ = [
    "ApiKeyInfo",
    "JobRecord",
    "MultiLevelCache",
    "CapReachedError",
    "NotFoundError",
    "SessionExpiredError",
    "SessionRecord",
    "Store",
    "TurnRecord",
    "Usage",
    "UsageWindow",
    "default_database_url",
    "is_cacheable",
    "request_cache_key",
]
