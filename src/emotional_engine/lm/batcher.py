"""The builtin decoder's continuous batcher: the inference loop behind `BuiltinGenerator`.

One scheduler thread owns the model. Each step it packs every running request into one forward
pass: one token per decoding request plus at most `prefill_chunk` prompt tokens of requests still
prefilling. Requests join and leave between steps. Output is streamed per token to whichever
thread or event loop asked for it.

Isolation: a request whose logits processor raises, or whose consumer went away, ends alone. If
the packed forward pass itself raises, each segment is retried alone and only the ones that
still fail are ended; caches stay valid because a cache's length only advances after a pass
succeeds.

Kept caches: a request may name a KV key; its KV cache is kept under that key after the request
ends, and the next request with the same key prefills only the tokens after the longest common
prefix. Idle kept caches are evicted least-recently-used first when all caches together exceed the budget.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence

import torch

from emotional_engine.lm.generator import Completion, Piece
from emotional_engine.lm.kv_cache import CachePool, KVArena, KVCache, Segment
from emotional_engine.lm.model import Llama
from emotional_engine.lm.requests import Request
from emotional_engine.lm.sampling import LogitsProcessor, Sampler, SamplingParams
from emotional_engine.lm.tokenizer import BPETokenizer, StreamDecoder

log = logging.getLogger(__name__)
BACKGROUND_EVERY = 4  # a background request (SamplingParams.background) steps once in this many while others run


class ContextOverflowError(ValueError):
    pass


def common_prefix_len(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


class ContinuousBatcher:
    def __init__(
        self,
        model: Llama,
        tokenizer: BPETokenizer,
        *,
        max_batch: int = 16,
        prefill_chunk: int = 256,
        cache_budget_bytes: int = 512 * 2**20,
        overflow: str = "truncate",
        cache_dtype: torch.dtype = torch.float32,
    ):
        if overflow not in ("truncate", "error"):
            raise ValueError("overflow must be 'truncate' or 'error'")
        self.model = model.eval()
        self.tok = tokenizer
        self.cfg = model.config
        self.max_batch = max_batch
        self.prefill_chunk = prefill_chunk
        self.overflow = overflow
        self.cache_dtype = cache_dtype
        self.pool = CachePool(cache_budget_bytes)
        self.arena = KVArena(self.cfg, cache_dtype)  # caches of running requests
        self._ids = itertools.count(1)
        self._waiting: list[Request] = []
        self._running: list[Request] = []
        self._cv = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self.steps = 0

    @property
    def has_adapter(self) -> bool:
        """Whether the model carries emotion-attention adapters (checked per step: they may be attached later)."""
        return any(b.attn.adapter is not None for b in self.model.layers)

    # ---- public API -------------------------------------------------------------------------

    def encode_prompt(self, prompt: str | list[dict[str, str]] | list[int]) -> list[int]:
        """Text is encoded as is; chat messages go through the model's chat template (a last assistant
        message is continued: the reply begins with its text); ids pass."""
        if isinstance(prompt, str):
            return self.tok.encode(prompt)
        if all(isinstance(t, int) for t in prompt):
            return list(prompt)  # type: ignore[arg-type]
        return self.tok.encode(self.tok.apply_chat_template(prompt, add_generation_prompt=True))

    def submit(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        emit: Callable[[Piece], None],
        *,
        kv_key: str | None = None,
        processors: Sequence[LogitsProcessor] = (),
    ) -> Request:
        if not prompt_ids:
            raise ValueError("the prompt is empty")
        prompt_ids = self._fit_context(list(prompt_ids), params)
        r = Request(
            id=next(self._ids),
            prompt_ids=prompt_ids,
            params=params,
            sampler=Sampler(params, processors),
            emit=emit,
            kv_key=kv_key,
            decoder=StreamDecoder(self.tok),
        )
        with self._cv:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._waiting.append(r)
            self._ensure_thread()
            self._cv.notify()
        return r

    async def stream(
        self,
        prompt: str | list[dict[str, str]] | list[int],
        params: SamplingParams | None = None,
        *,
        kv_key: str | None = None,
        processors: Sequence[LogitsProcessor] = (),
    ) -> AsyncIterator[Piece]:
        """Pieces of text as they are generated; cancelling the consumer cancels the request."""
        loop = asyncio.get_running_loop()
        q: asyncio.Queue[Piece] = asyncio.Queue()
        r = self.submit(
            self.encode_prompt(prompt),
            params or SamplingParams(),
            lambda p: loop.call_soon_threadsafe(q.put_nowait, p),
            kv_key=kv_key,
            processors=processors,
        )
        try:
            while True:
                piece = await q.get()
                yield piece
                if piece.finish_reason is not None:
                    return
        finally:
            r.cancelled = True  # no-op if it already finished

    def generate(
        self,
        prompt: str | list[dict[str, str]] | list[int],
        params: SamplingParams | None = None,
        *,
        kv_key: str | None = None,
        processors: Sequence[LogitsProcessor] = (),
        on_piece: Callable[[Piece], None] | None = None,
    ) -> Completion:
        """Blocking generation; `on_piece` sees each piece as it comes."""
        q: queue.Queue[Piece] = queue.Queue()
        r = self.submit(
            self.encode_prompt(prompt), params or SamplingParams(), q.put, kv_key=kv_key, processors=processors
        )
        pieces = []
        try:
            while True:
                piece = q.get()
                if on_piece:
                    on_piece(piece)
                pieces.append(piece)
                if piece.finish_reason is not None:
                    done = Completion.from_pieces(pieces)
                    done.token_ids = list(r.out_ids)
                    return done
        finally:
            r.cancelled = True

    def drop_cache(self, kv_key: str) -> None:
        with self._cv:
            self.pool.drop(kv_key)

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)

    # ---- scheduler ---------------------------------------------------------------------------

    def _fit_context(self, ids: list[int], params: SamplingParams) -> list[int]:
        ctx = self.cfg.context_length
        room = ctx - min(params.max_tokens, ctx // 2)
        if len(ids) <= room:
            return ids
        if self.overflow == "error":
            raise ContextOverflowError(
                f"the prompt has {len(ids)} tokens; with max_tokens={params.max_tokens} at most {room} fit "
                f"the model's context of {ctx}"
            )
        log.warning("prompt of %d tokens cut from the left to %d to fit the context of %d", len(ids), room, ctx)
        return ids[-room:]

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._loop, name="lm-scheduler", daemon=True)
            self._thread.start()

    @torch.inference_mode()  # every tensor the scheduler touches (arena, caches) is an inference tensor
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not self._running and not self._closed:
                    self._cv.wait()
                if self._closed:
                    for r in self._waiting + self._running:
                        self._finish(r, "cancelled")
                    return
                self._admit()
            try:
                self._step()
            except Exception as e:  # never let the scheduler die silently
                log.exception("scheduler step failed")
                for r in list(self._running):
                    self._finish(r, "error", error=f"{type(e).__name__}: {e}")

    def _admit(self) -> None:
        later = []
        while self._waiting and len(self._running) < self.max_batch:
            r = self._waiting.pop(0)
            if r.kv_key is not None and any(q.kv_key == r.kv_key and len(q.feed) > 1 for q in self._running):
                later.append(r)  # another request with the key prefills: start from a copy of it afterwards
                continue
            cache = None
            if r.kv_key is not None:
                cache = self.pool.checkout(r.kv_key)
            if cache is not None:
                keep = min(common_prefix_len(cache.tokens, r.prompt_ids), len(r.prompt_ids) - 1)
                cache.truncate(keep)
                r.cached_tokens = keep
            else:
                cache = KVCache(self.cfg, self.cache_dtype)
            if r.kv_key is not None:
                self.pool.hold(r.kv_key, cache)
            r.cache = cache
            try:
                self.arena.bind(cache)
            except Exception as e:  # e.g. out of memory: this request fails, the batcher goes on
                log.exception("request %d could not be admitted", r.id)
                self._finish(r, "error", error=f"{type(e).__name__}: {e}")
                continue
            r.feed = r.prompt_ids[cache.length :]
            self._running.append(r)
        self._waiting[:0] = later

    def _step(self) -> None:
        for r in [r for r in self._running if r.cancelled]:
            self._finish(r, "cancelled")
        if not self._running:
            return
        batch: list[tuple[Request, int]] = []  # (request, tokens fed this step)
        prefill_budget = self.prefill_chunk
        # background requests wait while others run, but step every BACKGROUND_EVERY steps: never starved
        waiting = any(not r.params.background for r in self._running) and self.steps % BACKGROUND_EVERY
        for r in sorted(self._running, key=lambda r: r.cache.slot):  # rows in slot order: no reshuffle
            if waiting and r.params.background:
                continue
            if len(r.feed) == 1:
                batch.append((r, 1))
            elif prefill_budget > 0:
                # a request's chunk boundaries depend only on itself, never on its batch mates
                n = min(len(r.feed), self.prefill_chunk)
                batch.append((r, n))
                prefill_budget -= n
        self.steps += 1
        if not batch:
            return
        logits = self._forward(batch)
        for (r, n), row in zip(batch, logits):
            if r not in self._running:
                continue  # failed in isolation
            r.feed = r.feed[n:]
            if r.feed:
                continue  # still prefilling
            try:
                tok = r.sampler(row, r.prompt_ids, r.out_ids)
                self._on_token(r, tok)
            except Exception as e:
                log.warning("request %d failed: %s", r.id, e)
                self._finish(r, "error", error=f"{type(e).__name__}: {e}")

    def _emotion_rows(self, batch: list[tuple[Request, int]]) -> torch.Tensor | None:
        """(N, D) each packed token's emotion context (its request's; zeros without one), or None
        when no request in the batch has one or the model carries no emotion adapter."""
        if not self.has_adapter or all(r.emotion_context is None for r, _ in batch):
            return None
        dim = len(next(r.emotion_context for r, _ in batch if r.emotion_context is not None))
        return torch.cat(
            [torch.tensor(r.emotion_context or [0.0] * dim, dtype=torch.float32).expand(n, dim) for r, n in batch]
        )

    def _forward(self, batch: list[tuple[Request, int]]) -> list[torch.Tensor]:
        tokens = torch.tensor([t for r, n in batch for t in r.feed[:n]], dtype=torch.long)
        try:
            return list(
                self.model.forward_packed(tokens, [Segment(r.cache, n) for r, n in batch], self._emotion_rows(batch))
            )
        except Exception:
            if len(batch) == 1:
                raise
        rows = []
        for r, n in batch:  # find the culprit: retry each segment alone
            try:
                rows.append(
                    self.model.forward_packed(
                        torch.tensor(r.feed[:n]), [Segment(r.cache, n)], self._emotion_rows([(r, n)])
                    )[0]
                )
            except Exception as e:
                log.warning("request %d failed in the forward pass: %s", r.id, e)
                self._finish(r, "error", error=f"{type(e).__name__}: {e}")
                rows.append(torch.empty(0))
        return rows

    def _on_token(self, r: Request, tok: int) -> None:
        if r.t_first is None:
            r.t_first = time.perf_counter()
        r.out_ids.append(tok)
        p = r.params
        if tok in self.tok.eos_ids and not p.ignore_eos:
            self._finish(r, "stop")
            return
        new = r.decoder.push(tok)
        r.count_sentence_ends(new)  # the token fed next, this one, already takes the next sentence's context
        text, stopped = r.cut_at_stop(r.held + new)
        finish = "stop" if stopped else None
        if finish is None and len(r.out_ids) >= p.max_tokens:
            finish = "length"
        if finish is None and r.cache.length + 1 > self.cfg.context_length:
            finish = "length"
        if finish is not None:
            r.held = ""
            self._emit(r, Piece(text, tok, logprob=r.sampler.logprob))
            self._finish(r, finish)
            return
        out = r.hold_back(text)
        if out:
            self._emit(r, Piece(out, tok, logprob=r.sampler.logprob))
        r.feed = [tok]

    def _emit(self, r: Request, piece: Piece) -> None:
        if not r.announced:
            r.announced = True
            piece.prefill = {"prompt_tokens": len(r.prompt_ids), "cached_tokens": r.cached_tokens}
        try:
            r.emit(piece)
        except Exception:  # the consumer is gone (closed event loop, ...)
            r.cancelled = True

    def _finish(self, r: Request, reason: str, error: str | None = None) -> None:
        now = time.perf_counter()
        if r in self._running:
            self._running.remove(r)
        elif r in self._waiting:
            self._waiting.remove(r)
        if r.cache is not None and r.cache.arena is not None:
            self.arena.unbind(r.cache)
            if not self.arena.caches:
                self.arena.release()  # idle: give the working memory back
        with self._cv:  # settle the kept cache before the caller hears the request ended
            if r.kv_key is not None and r.cache is not None:
                # the key keeps the cache of the request the caller went on with: not one that failed,
                # nor a candidate cancelled while another with the key still runs
                passed_over = reason == "cancelled" and any(q.kv_key == r.kv_key for q in self._running)
                self.pool.checkin(r.kv_key, r.cache, keep=reason != "error" and not passed_over)
            self.pool.enforce(self.arena.bound_bytes)
        self._emit(r, Piece(r.held, None, finish_reason=reason, error=error, usage=r.usage(now)))
        r.held = ""
