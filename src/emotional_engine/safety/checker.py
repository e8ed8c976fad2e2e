"""The audience safety check: classify each sentence, apply the audience's policy, report, repair.

The sync methods (`check_sentences`, `check_text`) run the embedding model in the caller's thread;
from async code use `acheck_sentences` / `acheck_text` / `repair`, which run it through
`emotional_engine.threads.run_model` (the single-OpenMP-thread model worker) so that decoding and
the event loop are not stalled.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
from collections.abc import Awaitable, Callable
from typing import Literal

from pydantic import BaseModel

from emotional_engine.culture.profiles import Audience, load_profile
from emotional_engine.text import split_sentences
from emotional_engine.threads import run_model

from .model import SafetyModel
from .policy import Action, action_for

Status = Literal["passed", "repaired", "flagged", "blocked"]
Regenerate = Callable[[str, str], Awaitable[str]]  # (sentence, reason) -> a replacement sentence
MAX_TRIES = 2
# For teens and adults a block needs a confident classifier: on the embedded model's odd prose the
# head gave innocuous sentences 0.37-0.51 for "hate" ("His own father answered the question, but what
# did he know?"), while real hate speech scores 0.98+; below this a would-be block is only flagged.
# For children the check stays recall-first: any block blocks.
BLOCK_MIN_PROBABILITY = 0.8
log = logging.getLogger(__name__)


class SentenceVerdict(BaseModel):
    sentence: str
    category: str  # one of labels.CATEGORIES
    severity: int  # 0 safe, 1 mild, 2 strong
    probability: float  # the classifier's probability of `category`
    action: Action  # what the audience's policy does with it


class Finding(BaseModel):
    index: int  # the sentence's position in the checked text
    sentence: str
    category: str
    severity: int
    probability: float
    action: Action  # flag or block


class Repair(BaseModel):
    index: int
    original: str
    replacement: str | None  # None: every try still failed and the sentence was dropped
    attempts: int
    reason: str


class SafetyReport(BaseModel):
    """`model_dump()` is what goes in `Story.safety`."""

    status: Status  # blocked > repaired > flagged > passed
    audience: Audience
    sentences: int
    findings: list[Finding] = []  # flagged and blocked sentences; `index` counts sentences of the final text
    repairs: list[Repair] = []  # `index` counts sentences of the text before repair
    notes: list[str] = []  # the culture profile's sensitivities for this audience, for the writer and reader


def paragraphs(text: str) -> list[list[str]]:
    """The text's sentences, grouped by paragraph (blank-line separated), whitespace normalised."""
    return [s for s in (split_sentences(p) for p in re.split(r"\n\s*\n", text.strip())) if s]


def join(paras: list[list[str]]) -> str:
    return "\n\n".join(" ".join(p) for p in paras if p)


def culture_notes(culture: str | None, audience: Audience) -> list[str]:
    return load_profile(culture).sensitivities_for(audience) if culture else []


class SafetyChecker:
    _instance: SafetyChecker | None = None
    _lock = threading.Lock()

    def __init__(self, model: SafetyModel):
        self.model = model

    @classmethod
    def load(cls) -> SafetyChecker:
        """The shared checker; loads the classifier (and MiniLM, shared with the emotion model) once."""
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls(SafetyModel.load())
            return cls._instance

    # ------------------------------------------------------------ sync, in the caller's thread
    def check_sentences(self, sentences: list[str], audience: Audience) -> list[SentenceVerdict]:
        """One verdict per sentence, all sentences in one batched embedding call."""
        action_for("safe", 0, audience)  # an unknown audience fails here, before any model work
        return [
            SentenceVerdict(
                sentence=s,
                category=p.category,
                severity=p.severity,
                probability=round(p.probability, 4),
                action=_action(p, audience),
            )
            for s, p in zip(sentences, self.model.predict(list(sentences)))
        ]

    def check_text(self, text: str, audience: Audience, culture: str | None = None) -> SafetyReport:
        sentences = [s for p in paragraphs(text) for s in p]
        return _report(self.check_sentences(sentences, audience), audience, culture_notes(culture, audience))

    # ------------------------------------------------------------ async, through the model worker
    async def acheck_sentences(self, sentences: list[str], audience: Audience) -> list[SentenceVerdict]:
        return await run_model(self.check_sentences, sentences, audience)

    async def acheck_text(self, text: str, audience: Audience, culture: str | None = None) -> SafetyReport:
        return await run_model(self.check_text, text, audience, culture)

    async def repair(
        self, text: str, audience: Audience, regenerate: Regenerate, culture: str | None = None
    ) -> tuple[str, SafetyReport]:
        """The text with every blocked sentence regenerated (at most MAX_TRIES tries, each re-checked)
        or, when every try is still blocked, dropped; other sentences are kept as they are.
        Returns the new text and its report (status `repaired` when anything was replaced or dropped).
        A `regenerate` call that raises counts as a failed try, so one bad call costs a sentence, not the text."""
        notes = culture_notes(culture, audience)  # a bad culture fails before any work
        paras: list[list[str | None]] = paragraphs(text)
        flat = [(pi, si) for pi, p in enumerate(paras) for si in range(len(p))]
        verdicts = await self.acheck_sentences([paras[pi][si] for pi, si in flat], audience)
        blocked = [i for i, v in enumerate(verdicts) if v.action == "block"]
        done = await asyncio.gather(*(self._repair_one(i, verdicts[i], audience, regenerate) for i in blocked))
        final: list[SentenceVerdict] = []
        replaced = dict(zip(blocked, done))
        for i, (pi, si) in enumerate(flat):
            if i not in replaced:
                final.append(verdicts[i])
                continue
            _, v = replaced[i]
            paras[pi][si] = v.sentence if v is not None else None
            if v is not None:
                final.append(v)
        new_text = join([[s for s in p if s is not None] for p in paras])
        report = _report(final, audience, notes, [r for r, _ in done])
        return new_text, report

    async def _repair_one(
        self, index: int, verdict: SentenceVerdict, audience: Audience, regenerate: Regenerate
    ) -> tuple[Repair, SentenceVerdict | None]:
        """Up to MAX_TRIES replacements, each re-checked; the first that is not blocked wins."""
        first_reason = reason = _reason(verdict, audience)
        for attempt in range(1, MAX_TRIES + 1):
            try:
                candidate = " ".join((await regenerate(verdict.sentence, reason)).split())
            except Exception:
                log.warning("safety repair: regenerate failed for sentence %d (try %d)", index, attempt, exc_info=True)
                continue
            if not candidate:
                continue
            (v,) = await self.acheck_sentences([candidate], audience)
            if v.action != "block":
                return Repair(
                    index=index, original=verdict.sentence, replacement=candidate, attempts=attempt, reason=first_reason
                ), v
            reason = _reason(v, audience)  # the next try hears what was wrong with this one
        return Repair(
            index=index, original=verdict.sentence, replacement=None, attempts=MAX_TRIES, reason=first_reason
        ), None


def _action(p, audience: Audience) -> str:
    action = action_for(p.category, p.severity, audience)
    unsure = audience != "children" and p.probability < BLOCK_MIN_PROBABILITY
    return "flag" if action == "block" and unsure else action


def _reason(v: SentenceVerdict, audience: Audience) -> str:
    strength = {1: "mild", 2: "strong"}[v.severity]
    return f"{strength} {v.category.replace('_', '-')} content is not suitable for a {audience} audience"


def _report(
    verdicts: list[SentenceVerdict], audience: Audience, notes: list[str], repairs: list[Repair] | None = None
) -> SafetyReport:
    findings = [Finding(index=i, **v.model_dump()) for i, v in enumerate(verdicts) if v.action != "allow"]
    actions = {f.action for f in findings}
    status: Status = (
        "blocked" if "block" in actions else "repaired" if repairs else "flagged" if "flag" in actions else "passed"
    )
    return SafetyReport(
        status=status, audience=audience, sentences=len(verdicts), findings=findings, repairs=repairs or [], notes=notes
    )
