"""Dependencies for the routers, as `Annotated[..., Depends(...)]` aliases; tests override `get_settings`."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from emotional_engine.config import Settings
from emotional_engine.service.auth import authenticate
from emotional_engine.service.state import Service


# async: a plain `def` dependency would cost a thread-pool hop on every request
async def get_service(request: Request) -> Service:
    return request.app.state.service


async def get_settings(request: Request) -> Settings:
    """The app's settings: those given to `create_app` (tests pass their own), else the environment's."""
    return request.app.state.service.settings


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[Service, Depends(get_service)]


async def get_key_id(request: Request, service: ServiceDep) -> str:
    """The caller's API key id (401 without a valid key), counted against its request rate."""
    key_id = await authenticate(request, service)
    await service.limiter.check_request(key_id)
    return key_id


KeyId = Annotated[str, Depends(get_key_id)]
