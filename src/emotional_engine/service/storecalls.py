"""Store calls from the event loop: in a thread, with the store's errors turned into API errors."""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from emotional_engine.service.errors import ApiError, new_incident
from emotional_engine.storage.records import CapReachedError, NotFoundError, SessionExpiredError

log = logging.getLogger(__name__)


async def call(service, fn, *args):
    try:
        out = await asyncio.to_thread(fn, *args)
    except NotFoundError as e:
        raise ApiError(404, "not_found", f"{e} for this API key") from None
    except SessionExpiredError as e:
        raise ApiError(410, "session_expired", f"{e}; start a new session to play on") from None
    except CapReachedError as e:
        kind = "too_many_jobs" if e.what == "unfinished jobs" else "too_many_sessions"
        raise ApiError(429, kind, str(e), retry_after=10) from None
    except IntegrityError as e:
        incident = new_incident()
        log.warning("conflicting change (incident %s): %s", incident, e.orig)
        message = f"the change conflicts with another one made at the same time (incident {incident}); retry it"
        raise ApiError(409, "conflict", message, incident=incident) from None
    except SQLAlchemyError as e:
        log.warning("database unavailable: %s", e)
        service.store_answered(False)
        raise ApiError(
            503,
            "database_unavailable",
            "the database is unreachable, so this cannot be done or kept now; retry shortly",
            retry_after=5,
        ) from None
    service.store_answered(True)
    return out
