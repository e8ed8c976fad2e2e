"""Long stories as jobs: run in the background, checkpointed after every scene, resumed elsewhere.

Each finished scene's outcome is committed to the job's progress before the next scene starts, so
a server that dies mid-story leaves a job that resumes from its last finished scene, writing the
remaining scenes exactly as an uninterrupted run would (the job's request carries a fixed seed).

Exactly one worker runs a job: a worker (`JobRunner`, one per app instance) claims it with a
conditional UPDATE that sets it as the owner until a lease expires (`Store.claim_job`), renews the
lease every third of `job_lease_s` while it writes, and stops if it loses it (the job was cancelled,
or taken over after this worker stalled). Every worker looks for jobs with no live lease every half
lease: a job whose worker died is taken over once its lease runs out; one whose worker shut down
cleanly (its leases released) at once. The store is called off the event loop, and a failure is
recorded even if the store is down when it happens: it is retried until the store is back.
"""

from __future__ import annotations

import asyncio
import logging
import random
import uuid
from contextlib import suppress

from emotional_engine.agents.orchestrator import SceneOutcome
from emotional_engine.agents.story import StoryPlan
from emotional_engine.domain import StoryRequest
from emotional_engine.service.errors import ApiError, ModelFailedError, new_incident
from emotional_engine.service.protocol import ErrorDetail
from emotional_engine.service.serving import account, begin, keep_story
from emotional_engine.service.storecalls import call

log = logging.getLogger(__name__)
STORE_RETRY_S = 2.0  # how often a result that could not be stored is tried again
MODEL_ATTEMPTS = 4  # a job whose model fails this often in a row fails
MODEL_RETRY_S = 1.0  # waited after the first model failure, twice that after the second...


class LeaseLost(Exception):
    """The job is no longer this worker's: cancelled, or taken over after its lease ran out."""


class JobRunner:
    def __init__(self, service, lease_s: float | None = None):
        self.service = service
        self.lease_s = lease_s or service.settings.job_lease_s
        self.owner = uuid.uuid4().hex  # this worker
        self.tasks: dict[str, asyncio.Task] = {}

    async def submit(self, key_id: str, request: StoryRequest) -> str:
        if request.seed is None:  # fixed now, so that a resumed job continues the same story
            request = request.model_copy(update={"seed": random.randrange(2**31)})
        store = self.service.store
        cap = self.service.settings.max_jobs_per_key
        job_id = await call(self.service, store.create_job, key_id, request.model_dump(mode="json"), cap)
        if await call(self.service, store.claim_job, job_id, self.owner, self.lease_s) is not None:
            self._start(job_id, key_id, request, {})
        return job_id

    async def take_over(self) -> int:
        """Claim and start every job nobody holds; how many were started."""
        store, started = self.service.store, 0
        for job_id in await asyncio.to_thread(store.claimable_jobs):
            if job_id in self.tasks:
                continue
            job = await asyncio.to_thread(store.claim_job, job_id, self.owner, self.lease_s)
            if job is None:  # another worker was quicker
                continue
            log.info("running job %s from its %s finished scenes", job.id, len(job.progress.get("outcomes", [])))
            self._start(job.id, job.key_id, StoryRequest.model_validate(job.request), job.progress)
            started += 1
        return started

    async def watch(self) -> None:
        """Take over jobs whose worker is gone, every half lease, for as long as the app runs."""
        while True:
            await asyncio.sleep(self.lease_s / 2)
            try:
                await self.take_over()
            except Exception as e:  # the database is down: next round
                log.warning("looking for jobs to take over failed: %s", e)

    async def release_all(self) -> None:
        """Stop this worker's jobs and give their leases up, so another worker resumes them at once."""
        tasks = list(self.tasks.items())
        for _, task in tasks:
            task.cancel()
        for job_id, task in tasks:
            try:
                await task
            except BaseException:  # noqa: S110  (a cancelled or failed job: released below either way)
                pass
            try:
                await asyncio.to_thread(self.service.store.release_job, job_id, self.owner)
            except Exception as e:  # its lease runs out instead
                log.warning("job %s not released: %s", job_id, e)

    def cancel(self, job_id: str) -> None:
        task = self.tasks.get(job_id)
        if task is not None:
            task.cancel()

    def _start(self, job_id: str, key_id: str, request: StoryRequest, progress: dict) -> None:
        task = asyncio.create_task(self._held(job_id, key_id, request, progress), name=f"job-{job_id}")
        self.tasks[job_id] = task
        task.add_done_callback(lambda t: self.tasks.pop(job_id, None))

    async def _held(self, job_id: str, key_id: str, request: StoryRequest, progress: dict) -> None:
        """Run the job while renewing its lease; stop when the lease is lost."""
        run = asyncio.create_task(self._run(job_id, key_id, request, progress))
        try:
            while not run.done():
                await asyncio.wait([run], timeout=self.lease_s / 3)
                if run.done():
                    break
                try:
                    held = await asyncio.to_thread(self.service.store.claim_job, job_id, self.owner, self.lease_s)
                except Exception as e:  # the database is down: the lease may run out, and then it is lost
                    log.warning("job %s: lease not renewed: %s", job_id, e)
                    self.service.store_answered(False)
                    continue
                if held is None:
                    log.info("job %s is no longer this worker's; stopping", job_id)
                    run.cancel()
            await run
        finally:
            if not run.done():  # this task was cancelled: the run stops before the lease is released
                run.cancel()
                with suppress(BaseException):
                    await run

    async def _run(self, job_id: str, key_id: str, request: StoryRequest, progress: dict) -> None:
        svc, owner = self.service, self.owner
        done = [SceneOutcome.model_validate(o) for o in progress.get("outcomes", [])]
        plan = StoryPlan.model_validate(progress["plan"]) if progress.get("plan") else None
        saved = {
            "outcomes": [o.model_dump(mode="json") for o in done],
            "scenes_total": progress.get("scenes_total"),
            "plan": progress.get("plan"),
        }

        async def on_event(e):
            if e.kind == "plan":  # kept as it stands now: the scenes' targets move as the story goes
                saved["scenes_total"] = len(e.data.scenes)
                saved["plan"] = e.data.model_dump(mode="json")
            elif e.kind == "checkpoint":  # committed before the next scene starts
                saved["outcomes"].append(e.data.model_dump(mode="json"))
                progress = {**saved, "scenes_done": len(saved["outcomes"])}
                # the job pauses while the database is down rather than failing; a lease taken over meanwhile stops it
                if not await self._until_stored(svc.store.checkpoint_job, job_id, progress, owner):
                    raise LeaseLost(job_id)

        try:
            failures = 0
            while True:
                try:
                    async with svc.admission.slot(key_id, background=True):
                        usage = await begin(svc, key_id, "story", request.words)  # 429: wait for budget
                        try:
                            story = await svc.engine.agenerate(request, on_event, done, plan)
                        finally:
                            await account(svc, key_id, usage)
                    break
                except ApiError as e:  # no slot now: a job waits rather than fails
                    await asyncio.sleep(e.retry_after or 1.0)
                except ModelFailedError as e:  # may pass: go on from the last checkpoint, a few times
                    failures += 1
                    if failures >= MODEL_ATTEMPTS:
                        raise
                    log.warning("job %s: the model failed (%s); resuming after scene %d", job_id, e, len(done))
                    await asyncio.sleep(MODEL_RETRY_S * failures)
                    done = [SceneOutcome.model_validate(o) for o in saved["outcomes"]]
                    plan = StoryPlan.model_validate(saved["plan"]) if saved["plan"] else None
            story_id, _ = await keep_story(svc, key_id, request, story)
            await self._until_stored(svc.store.finish_job, job_id, story_id, owner)
        except (asyncio.CancelledError, LeaseLost):
            log.info("job %s stopped", job_id)
            raise asyncio.CancelledError from None
        except Exception:
            incident = new_incident()
            log.exception("job %s failed (incident %s)", job_id, incident)
            message = f"the story could not be written (incident {incident}); it is logged, submit the job again"
            error = ErrorDetail(type="generation_failed", message=message, incident=incident)
            await self._until_stored(svc.store.fail_job, job_id, error.model_dump_json(), owner)

    async def _until_stored(self, fn, *args):
        """Call the store until it answers (its answer returned): nothing is dropped because the database was down."""
        while True:
            try:
                return await asyncio.to_thread(fn, *args)
            except Exception as e:
                log.warning("job result not stored yet (%s); retrying in %.0f s", e, STORE_RETRY_S)
                self.service.store_answered(False)
                await asyncio.sleep(STORE_RETRY_S)
