"""KV caches: one sequence's keys and values (`KVCache`), the running batch's shared storage
(`KVArena`), a sequence's share of a packed pass (`Segment`), and the caches kept between requests
under their cache keys within a byte budget (`CachePool`)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol

import torch

log = logging.getLogger(__name__)


class KVShape(Protocol):
    """What a cache needs of the model's configuration (`model.LlamaConfig` has it): its K/V dimensions.
    A protocol, so that this module, which model.py imports, need not import model.py back."""

    @property
    def n_layer(self) -> int: ...

    @property
    def n_kv_head(self) -> int: ...

    @property
    def head_dim(self) -> int: ...


def _round_up(n: int, granule: int) -> int:
    return -(-n // granule) * granule


class KVCache:
    """Keys and values of one sequence for every layer: (n_layer, nkv, cap, hs) each.

    Standalone, it owns its storage and grows it. Bound to a `KVArena` (while its request runs in
    the batcher), `k`/`v` are views of one arena slot, so decoding sequences share one attention call.
    """

    GROW = 256  # capacity granule, in tokens

    def __init__(self, cfg: KVShape, dtype: torch.dtype = torch.float32, capacity: int = 0):
        self.cfg = cfg
        self.dtype = dtype
        self.length = 0
        self.tokens: list[int] = []  # ids whose K/V are stored, for prefix reuse
        self.arena: KVArena | None = None
        self.slot = -1
        self.k = self.v = torch.empty(0)
        self._alloc(capacity)

    def _alloc(self, capacity: int) -> None:
        c = self.cfg
        shape = (c.n_layer, c.n_kv_head, capacity, c.head_dim)
        k, v = torch.empty(shape, dtype=self.dtype), torch.empty(shape, dtype=self.dtype)
        if self.length:
            k[:, :, : self.length] = self.k[:, :, : self.length]
            v[:, :, : self.length] = self.v[:, :, : self.length]
        self.k, self.v = k, v

    @property
    def capacity(self) -> int:
        return self.k.shape[2] if self.k.dim() == 4 else 0

    def reserve(self, n_new: int) -> None:
        need = self.length + n_new
        if self.arena is not None:
            self.arena.ensure_capacity(need)
        elif need > self.capacity:
            self._alloc(_round_up(int(need * 1.5), self.GROW))

    def fork(self) -> KVCache:
        """A standalone copy of what this cache holds (bound or not): a second request on the same
        prompt starts from it instead of prefilling the prompt again."""
        twin = KVCache(self.cfg, self.dtype, capacity=self.length)
        twin.k[:, :, : self.length] = self.k[:, :, : self.length]
        twin.v[:, :, : self.length] = self.v[:, :, : self.length]
        twin.length, twin.tokens = self.length, list(self.tokens[: self.length])
        return twin

    def truncate(self, n: int) -> None:
        self.length = min(self.length, n)
        del self.tokens[self.length :]

    @property
    def nbytes(self) -> int:
        """Bytes this cache holds on its own (a bound cache's slot belongs to the arena)."""
        return 0 if self.arena is not None else self.k.numel() * self.k.element_size() * 2


class KVArena:
    """KV storage for the running batch: k, v of shape (n_layer, slots, nkv, cap, hs).

    Bound caches occupy slots 0..n-1 (unbinding moves the last one into the hole), so batched
    decode attention reads one contiguous block. Keys past a slot's length are masked; masked
    attention gives bitwise the same result whatever the capacity, so growing the arena for one
    sequence does not change another's output.
    """

    GROW = 256

    def __init__(self, cfg: KVShape, dtype: torch.dtype = torch.float32):
        self.cfg = cfg
        self.dtype = dtype
        self.caches: list[KVCache] = []
        self.k = self.v = torch.empty(cfg.n_layer, 0, cfg.n_kv_head, 0, cfg.head_dim, dtype=dtype)

    @property
    def cap(self) -> int:
        return self.k.shape[3]

    def _realloc(self, slots: int, cap: int) -> None:
        c = self.cfg
        shape = (c.n_layer, slots, c.n_kv_head, cap, c.head_dim)
        # zeros, not empty: masked keys get weight 0, and 0 * a stale NaN would still be NaN
        k, v = torch.zeros(shape, dtype=self.dtype), torch.zeros(shape, dtype=self.dtype)
        n, old = len(self.caches), self.cap
        if n:
            k[:, :n, :, :old] = self.k[:, :n]
            v[:, :n, :, :old] = self.v[:, :n]
        self.k, self.v = k, v
        for i, cache in enumerate(self.caches):
            cache.k, cache.v = k[:, i], v[:, i]

    def release(self) -> None:
        """Free the storage; only when no cache is bound."""
        assert not self.caches
        self.k = self.v = self.k.new_zeros(self.cfg.n_layer, 0, self.cfg.n_kv_head, 0, self.cfg.head_dim)

    def ensure_capacity(self, tokens: int) -> None:
        if tokens > self.cap:
            self._realloc(self.k.shape[1], _round_up(int(tokens * 1.5), self.GROW))

    @property
    def bound_bytes(self) -> int:
        """Bytes of the slots in use."""
        return len(self.caches) * self.k[:, :1].numel() * self.k.element_size() * 2

    def bind(self, cache: KVCache) -> None:
        """Move a standalone cache into a slot."""
        assert cache.arena is None
        n = len(self.caches)
        if n == self.k.shape[1] or cache.length > self.cap:
            self._realloc(max(self.k.shape[1], n + 1 + n // 2), max(self.cap, _round_up(cache.length + 1, self.GROW)))
        L = cache.length
        self.k[:, n, :, :L] = cache.k[:, :, :L]
        self.v[:, n, :, :L] = cache.v[:, :, :L]
        cache.k, cache.v, cache.arena, cache.slot = self.k[:, n], self.v[:, n], self, n
        self.caches.append(cache)

    def unbind(self, cache: KVCache) -> None:
        """Give the cache its own compact storage again and free its slot."""
        assert cache.arena is self
        L, slot = cache.length, cache.slot
        cache.k, cache.v = cache.k[:, :, :L].clone(), cache.v[:, :, :L].clone()
        cache.arena, cache.slot = None, -1
        last = self.caches.pop()
        if last is not cache:  # move the last slot into the hole
            n = last.length
            self.k[:, slot, :, :n] = self.k[:, last.slot, :, :n]
            self.v[:, slot, :, :n] = self.v[:, last.slot, :, :n]
            last.k, last.v, last.slot = self.k[:, slot], self.v[:, slot], slot
            self.caches[slot] = last


@dataclass
class Segment:
    """One sequence's share of a packed batch: `n` tokens appended to `cache`."""

    cache: KVCache
    n: int


class CachePool:
    """KV caches kept under their cache keys within a byte budget; idle ones are evicted least recently used first."""

    def __init__(self, budget_bytes: int):
        self.budget = budget_bytes
        self._idle: OrderedDict[str, KVCache] = OrderedDict()
        self._busy: dict[str, list[KVCache]] = {}  # the caches of running requests, by key
        self.evictions = 0

    def checkout(self, kv_key: str) -> KVCache | None:
        """The cache kept under `kv_key`, taken out of the pool (None: none kept, or evicted). While other
        requests with the key run (the candidates of one beat), a copy of what the first of them holds."""
        running = self._busy.get(kv_key)
        if running:
            return running[0].fork() if running[0].length else None
        return self._idle.pop(kv_key, None)

    def hold(self, kv_key: str, cache: KVCache) -> None:
        """A request with the key runs on `cache`."""
        self._busy.setdefault(kv_key, []).append(cache)

    def checkin(self, kv_key: str, cache: KVCache, keep: bool) -> None:
        """A request with the key ended: keep its cache under the key (in place of any kept before) or
        let it go (a cache of unknown state after an error, a candidate the caller turned down)."""
        running = self._busy.get(kv_key, [])
        running[:] = [c for c in running if c is not cache]
        if not running:
            self._busy.pop(kv_key, None)
        if keep:
            self._idle[kv_key] = cache
            self._idle.move_to_end(kv_key)

    def drop(self, kv_key: str) -> None:
        self._idle.pop(kv_key, None)

    def __contains__(self, kv_key: str) -> bool:
        return kv_key in self._idle

    def enforce(self, active_bytes: int) -> None:
        total = active_bytes + sum(c.nbytes for c in self._idle.values())
        while total > self.budget and self._idle:
            key, cache = self._idle.popitem(last=False)
            total -= cache.nbytes
            self.evictions += 1
            log.debug("evicted the KV cache kept under %s (%d bytes)", key, cache.nbytes)

    @property
    def idle_bytes(self) -> int:
        return sum(c.nbytes for c in self._idle.values())
