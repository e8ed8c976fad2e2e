"""POST /v1/jobs (202), GET /v1/jobs/{id} (progress; the story when done), DELETE /v1/jobs/{id} (cancel)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from emotional_engine.domain import StoryRequest
from emotional_engine.service import serving
from emotional_engine.service.deps import KeyId, ServiceDep
from emotional_engine.service.errors import ApiError, not_found
from emotional_engine.service.protocol import ErrorBody, ErrorDetail, JobOut
from emotional_engine.service.routes.stories import ERRORS
from emotional_engine.service.storecalls import call

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.post("", status_code=202, response_model=JobOut, responses=ERRORS)
async def create_job(body: StoryRequest, key_id: KeyId, service: ServiceDep):
    job_id = await service.jobs.submit(key_id, serving.with_model(service, body))
    return JSONResponse(
        JobOut(id=job_id, status="queued").model_dump(mode="json"),
        status_code=202,
        headers={"Location": f"/v1/jobs/{job_id}"},
    )


@router.get("/{job_id}", response_model=JobOut, responses=ERRORS | {404: {"model": ErrorBody}})
async def get_job(job_id: str, key_id: KeyId, service: ServiceDep) -> JobOut:
    job = await call(service, service.store.get_job, job_id, key_id)
    if job is None:
        raise not_found("job", job_id)
    story = None
    if job.status == "done" and job.story_id:
        story = await call(service, service.store.get_story, job.story_id, key_id)
    progress = {"scenes_done": len(job.progress.get("outcomes", [])), "scenes_total": job.progress.get("scenes_total")}
    return JobOut(
        id=job.id,
        status=job.status,
        progress=progress,
        story_id=job.story_id,
        story=story,
        error=stored_error(job.error),
    )


def stored_error(text: str | None) -> ErrorDetail | None:
    """A failed job's error as kept (JSON); a row from before codes were kept shows no raw text."""
    if text is None:
        return None
    try:
        return ErrorDetail.model_validate_json(text)
    except ValueError:
        return ErrorDetail(type="generation_failed", message="the story could not be written; submit the job again")


@router.delete(
    "/{job_id}", response_model=JobOut, responses=ERRORS | {404: {"model": ErrorBody}, 409: {"model": ErrorBody}}
)
async def cancel_job(job_id: str, key_id: KeyId, service: ServiceDep) -> JobOut:
    if not await call(service, service.store.cancel_job, job_id, key_id):
        job = await call(service, service.store.get_job, job_id, key_id)
        if job is None:
            raise not_found("job", job_id)
        raise ApiError(
            409, "conflict", f"job {job_id} is already {job.status}; only queued or running jobs can be cancelled"
        )
    service.jobs.cancel(job_id)
    return JobOut(id=job_id, status="cancelled")
