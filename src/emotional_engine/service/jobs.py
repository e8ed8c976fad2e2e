"""Long stories as jobs: run in the background, checkpointed after every scene, resumed after a restart.

Each finished scene's outcome is committed to the job's progress before the next scene starts, so
a server that dies mid-story resumes (at its next start) from the last finished scene, writing the
remaining scenes exactly as an uninterrupted run would (the job's request carries a fixed seed).
"""

from __future__ import annotations

import asyncio
import logging
import random

from emotional_engine.agents.orchestrator import SceneOutcome
from emotional_engine.agents.story import StoryPlan
from emotional_engine.domain import StoryRequest
from emotional_engine.service import metering
from emotional_engine.service.errors import ApiError, new_incident
from emotional_engine.service.protocol import ErrorDetail
from emotional_engine.service.serving import account, keep_story
from emotional_engine.service.storecalls import call

log = logging.getLogger(__name__)


class JobRunner:
    def __init__(self, service):
        self.service = service
        self.tasks: dict[str, asyncio.Task] = {}

    async def submit(self, key_id: str, request: StoryRequest) -> str:
        if request.seed is None:  # fixed now, so that a resumed job continues the same story
            request = request.model_copy(update={"seed": random.randrange(2**31)})
        job_id = await call(self.service, self.service.store.create_job, key_id, request.model_dump(mode="json"))
        self._start(job_id, key_id, request, {})
        return job_id

    async def resume_unfinished(self) -> int:
        jobs = await asyncio.to_thread(self.service.store.unfinished_jobs)
        for job in jobs:
            log.info("resuming job %s after %s finished scenes", job.id, len(job.progress.get("outcomes", [])))
            self._start(job.id, job.key_id, StoryRequest.model_validate(job.request), job.progress)
        return len(jobs)

    def cancel(self, job_id: str) -> None:
        task = self.tasks.get(job_id)
        if task is not None:
            task.cancel()

    def _start(self, job_id: str, key_id: str, request: StoryRequest, progress: dict) -> None:
        task = asyncio.create_task(self._run(job_id, key_id, request, progress), name=f"job-{job_id}")
        self.tasks[job_id] = task
        task.add_done_callback(lambda t: self.tasks.pop(job_id, None))

    async def _run(self, job_id: str, key_id: str, request: StoryRequest, progress: dict) -> None:
        svc = self.service
        done = [SceneOutcome.model_validate(o) for o in progress.get("outcomes", [])]
        plan = StoryPlan.model_validate(progress["plan"]) if progress.get("plan") else None
        saved = {
            "outcomes": [o.model_dump(mode="json") for o in done],
            "scenes_total": progress.get("scenes_total"),
            "plan": progress.get("plan"),
        }

        def on_event(e):
            if e.kind == "plan":  # kept as it stands now: the scenes' targets move as the story goes
                saved["scenes_total"] = len(e.data.scenes)
                saved["plan"] = e.data.model_dump(mode="json")
            elif e.kind == "checkpoint":  # committed before the next scene starts
                saved["outcomes"].append(e.data.model_dump(mode="json"))
                if not svc.store.checkpoint_job(job_id, {**saved, "scenes_done": len(saved["outcomes"])}):
                    raise asyncio.CancelledError  # cancelled meanwhile (perhaps by another replica)

        try:
            while True:
                try:
                    async with svc.admission.slot(key_id):
                        usage = metering.begin("story")
                        try:
                            story = await svc.engine.agenerate(request, on_event, done, plan)
                        finally:
                            await account(svc, key_id, usage)
                    break
                except ApiError as e:  # no slot now: a job waits rather than fails
                    await asyncio.sleep(e.retry_after or 1.0)
            story_id, _ = await keep_story(svc, key_id, request, story)
            await asyncio.to_thread(svc.store.finish_job, job_id, story_id)
        except asyncio.CancelledError:
            log.info("job %s stopped", job_id)
            raise
        except Exception:
            incident = new_incident()
            log.exception("job %s failed (incident %s)", job_id, incident)
            message = f"the story could not be written (incident {incident}); it is logged, submit the job again"
            error = ErrorDetail(type="generation_failed", message=message, incident=incident)
            await asyncio.to_thread(svc.store.fail_job, job_id, error.model_dump_json())
