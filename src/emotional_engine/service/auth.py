"""API keys: `Authorization: Bearer <key>` -> the key's id. Keys are stored hashed (see storage.db)."""

from __future__ import annotations

import asyncio
import hashlib
import ipaddress
import logging

from fastapi import Request

from emotional_engine.service.errors import ApiError

log = logging.getLogger(__name__)
LOCAL_KEY_NAME = "local-development"  # the one identity of every caller when auth is switched off


def refuse_open_public(auth_enabled: bool, host: str, forced: bool) -> str | None:
    """Why serving on `host` must not start (authentication off on a non-loopback address, unless
    `forced`), or None."""
    if auth_enabled or forced or host == "localhost" or _loopback(host):
        return None
    return (
        f"authentication is off (EE_AUTH_ENABLED=false) and {host} is not a loopback address: anyone who "
        "reaches it could use the server. Turn authentication on, listen on 127.0.0.1, or set "
        "EE_AUTH_OFF_ON_PUBLIC_ADDRESS=true if you really mean it"
    )


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: only "localhost" is known to be local
        return False


def warn_if_open(auth_enabled: bool) -> None:
    if not auth_enabled:
        log.warning(
            "AUTHENTICATION IS OFF (EE_AUTH_ENABLED=false): anyone who can reach this server can use it "
            "and all callers share one identity. Use this for local development only."
        )


async def authenticate(request: Request, service) -> str:
    """The caller's key id; 401 for a missing, unknown or revoked key, each counted against the client's
    address (`auth_failures_per_min`, then 429 before any key is read). A key verified in the last
    `KEY_MEMO_TTL_S` seconds is answered from memory, with neither the store nor the limiter asked."""
    if not service.settings.auth_enabled:
        return service.local_key_id
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" else ""
    memo = hashlib.sha256(token.encode()).hexdigest()  # never the plain key in memory longer than needed
    if token and (key_id := service.verified_keys.get(memo)) is not None:
        return key_id
    client = request.client.host if request.client else "unknown"
    per_min = service.settings.auth_failures_per_min
    await service.limiter.refuse_failing_client(client, per_min)
    try:
        return await _verified(service, token, memo)
    except ApiError as e:
        if e.status == 401:
            await service.limiter.failed_authentication(client, per_min)
        raise


async def _verified(service, token: str, memo: str) -> str:
    if not token:
        raise ApiError(
            401,
            "unauthorized",
            "send your API key as 'Authorization: Bearer <key>'; create one with `emotional-engine keys create NAME`",
        )
    try:
        info = await asyncio.to_thread(service.store.verify_key, token)
    except Exception as e:  # the database is down: say so rather than call the key bad
        log.warning("key check failed: %s", e)
        raise ApiError(
            503, "database_unavailable", "the key store is unreachable; retry shortly", retry_after=5
        ) from None
    if info is None:
        raise ApiError(401, "unauthorized", "this API key is unknown or revoked; check it or create a new one")
    service.verified_keys[memo] = info.id  # a revoked key stops working within the memo's TTL
    return info.id
