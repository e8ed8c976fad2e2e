"""The checks the sentence gate runs on every sentence before it is shown, and their repairs.

Each check gets the sentence and the text shown before it and returns the sentence to show (as it
was, repaired, or rewritten by the model) or None to drop it, with a reason when it acted:
- `SafetyCheck`: the audience safety classifier; a blocked sentence is rewritten (each try
  re-checked) or dropped.
- `SensitivityCheck`: the culture's sensitivity and stereotype rules; rewritten or dropped.
- `CharacterCheck`: the character checker on the sentence in its context; a stray name or a wrong
  pronoun is substituted, the dead acting or a contradicted trait or kinship is rewritten or dropped.
- `MemoryCheck`: the sentence's facts against the story memory (where everyone is, who is dead,
  colours of things, relations); a contradiction is rewritten with what the story established, or dropped.
A rewrite is one call to the generator with the sentence before it and the reason
(`agents/rewrite.py`); it must pass the same check, else the next try, else the sentence goes.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Awaitable, Callable

from emotional_engine.agents.character_check import CharacterChecker, Finding
from emotional_engine.agents.rewrite import Rewrite, first_sentence, plausible, rewrite_messages
from emotional_engine.culture.sensitivity import check_sentence
from emotional_engine.domain import Character
from emotional_engine.lm.generator import Generator
from emotional_engine.lm.sampling import SamplingParams
from emotional_engine.memory import StoryMemory, extract_facts, find_contradictions
from emotional_engine.safety import Repair, SafetyChecker

TRIES = 2
Rewriter = Callable[[str, str, str], Awaitable[str]]  # (sentence, reason, before) -> a new sentence


def rewriter(generator: Generator, seed: int) -> Rewriter:
    async def rewrite(sentence: str, reason: str, before: str) -> str:
        params = SamplingParams(
            max_tokens=96, temperature=0.7, top_p=0.95, seed=seed + zlib.crc32(f"{sentence}|{reason}".encode())
        )
        done = await generator.complete(rewrite_messages(before, sentence, reason), params)
        candidate = first_sentence(done.text)
        return candidate if plausible(sentence, candidate, reason) else ""  # a failed try

    return rewrite


async def rewrite_until(
    sentence: str, reason: str, before: str, rewrite: Rewriter, still_bad: Callable[[str], str | None]
) -> Rewrite:
    """Up to TRIES rewrites, each passed through the check that flagged the sentence."""
    for attempt in range(1, TRIES + 1):
        candidate = await rewrite(sentence, reason, before)
        if candidate and candidate != sentence and still_bad(candidate) is None:
            return Rewrite(old=sentence, new=candidate, reason=reason, tries=attempt)
    return Rewrite(old=sentence, new=None, reason=reason, tries=TRIES)


def _outcome(r: Rewrite, kind: str) -> tuple[str | None, str]:
    if r.new is None:
        return None, f"{kind}: dropped {r.old!r} ({r.reason})"
    return r.new, f"{kind}: rewrote {r.old!r} -> {r.new!r} ({r.reason})"


class SafetyCheck:
    kind = "safety"

    def __init__(self, checker: SafetyChecker, audience: str, rewrite: Rewriter):
        self.checker, self.audience, self.rewrite = checker, audience, rewrite
        self.repairs: list[Repair] = []  # for the story's safety report

    async def __call__(self, sentence: str, before: str) -> tuple[str | None, str | None]:
        fixed, report = await self.checker.repair(
            sentence, self.audience, lambda s, reason: self.rewrite(s, reason, before)
        )
        if not report.repairs:
            return sentence, None
        r = report.repairs[0]
        self.repairs.append(r.model_copy(update={"index": len(self.repairs)}))
        return _outcome(Rewrite(old=r.original, new=r.replacement, reason=r.reason, tries=r.attempts), "safety")


class SensitivityCheck:
    kind = "cultural"

    def __init__(self, culture: str, audience: str, rewrite: Rewriter):
        self.culture, self.audience, self.rewrite = culture, audience, rewrite

    def _problem(self, sentence: str) -> str | None:
        hits = check_sentence(sentence, self.culture, self.audience)
        return f"{hits[0][1].kind}: {hits[0][1].reason} ('{hits[0][0]}')" if hits else None

    async def __call__(self, sentence: str, before: str) -> tuple[str | None, str | None]:
        reason = self._problem(sentence)
        if reason is None:
            return sentence, None
        return _outcome(await rewrite_until(sentence, reason, before, self.rewrite, self._problem), "culture")


class CharacterCheck:
    """The character checker on the sentences shown before plus the new one; only the new sentence's
    findings count. The context runs on across scenes, as a reader of the finished story reads it, and
    is long enough for the checker's pronoun window (up to three sentences back) and a chain of
    pronouns through it. Facts (deaths, kinship) carry over between scenes through the checker."""

    kind = "character"
    CONTEXT_SENTENCES = 6

    def __init__(self, checker: CharacterChecker, rewrite: Rewriter):
        self.checker, self.rewrite = checker, rewrite
        self.context: list[str] = []
        self.stand_ins: dict[str, str] = {}  # stray name -> the cast member it became, for the whole story

    def _findings(self, sentence: str) -> tuple[list[Finding], int]:
        ctx = self.context[-self.CONTEXT_SENTENCES :]
        prefix = " ".join(ctx) + " " if ctx else ""
        result = self.checker.check(prefix + sentence)
        return [f for f in result.findings if f.start >= len(prefix)], len(prefix)

    def _problem(self, sentence: str) -> str | None:
        found, _ = self._findings(sentence)
        return f"{found[0].kind.replace('_', ' ')}: {found[0].reason}" if found else None

    async def __call__(self, sentence: str, before: str) -> tuple[str | None, str | None]:
        found, offset = self._findings(sentence)
        if not found:
            self._shown(sentence)
            return sentence, None
        reasons = []
        # substitutions first, right to left so offsets stay valid
        for f in sorted((f for f in found if f.fix and f.kind == "wrong_pronoun"), key=lambda f: -f.start):
            at = f.start - offset
            sentence = sentence[:at] + f.fix + sentence[at + len(f.span) :]
            reasons.append(f"character: {f.span} -> {f.fix} ({f.reason})")
        for f in (f for f in found if f.fix and f.kind == "foreign_name"):
            fix = self.stand_ins.setdefault(f.span, f.fix)
            sentence = re.sub(rf"\b{re.escape(f.span)}\b", lambda _, fix=fix: fix, sentence)  # a name is no template
            reasons.append(f"character: {f.span} -> {fix} ({f.reason})")
        rest = self._problem(sentence)
        if rest is not None:
            out, why = _outcome(await rewrite_until(sentence, rest, before, self.rewrite, self._problem), "character")
            reasons.append(why)
            sentence = out
        if sentence is not None:
            self._shown(sentence)
        return sentence, "; ".join(reasons)

    def _shown(self, sentence: str) -> None:
        self.context = [*self.context[1 - self.CONTEXT_SENTENCES :], sentence]


def _fact_key(f) -> tuple:
    return (f.kind, f.subject, f.attribute, f.value)


class MemoryCheck:
    """Facts of the scene so far plus the new sentence against what earlier scenes established (so a
    move earlier in the scene counts); only contradictions raised by the new sentence's own facts act.
    The memory itself grows after each scene (`remember_scene`)."""

    kind = "memory"

    def __init__(self, memory: StoryMemory, cast: list[Character], rewrite: Rewriter):
        self.memory, self.cast, self.rewrite = memory, cast, rewrite
        self.scene = 0
        self.context: list[str] = []

    def start_scene(self, index: int) -> None:
        self.scene, self.context = index, []

    def _problem(self, sentence: str) -> str | None:
        if not self.memory.facts:
            return None
        own = {_fact_key(f) for f in extract_facts(sentence, self.scene, self.cast)}
        if not own:
            return None
        scene = extract_facts(" ".join([*self.context, sentence]), self.scene, self.cast)
        found = [c for c in find_contradictions(self.memory, scene) if _fact_key(c.new) in own]
        return found[0].note() if found else None

    async def __call__(self, sentence: str, before: str) -> tuple[str | None, str | None]:
        reason = self._problem(sentence)
        if reason is not None:
            sentence, why = _outcome(
                await rewrite_until(sentence, reason, before, self.rewrite, self._problem), "memory"
            )
        if sentence is not None:
            self.context.append(sentence)
        return sentence, (why if reason is not None else None)
