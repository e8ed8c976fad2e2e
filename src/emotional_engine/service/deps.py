"""Dependencies for the routers, as `Annotated[..., Depends(...)]` aliases; tests override `get_settings`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from emotional_engine.config import Settings
from emotional_engine.config import get_settings as _get_settings
from emotional_engine.service.auth import authenticate
from emotional_engine.service.state import Service


def get_settings() -> Settings:
    return _get_settings()


def get_service(request: Request) -> Service:
    return request.app.state.service


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[Service, Depends(get_service)]


async def get_key_id(request: Request, service: ServiceDep) -> str:
    """The caller's API key id (401 without a valid key), counted against its request rate."""
    key_id = await authenticate(request, service)
    await service.limiter.check_request(key_id)
    return key_id


KeyId = Annotated[str, Depends(get_key_id)]
