"""The three-level cache with a real Redis and a real store: promotion, write-through, expiry, size
bound, sharing between instances, and degradation when Redis is unreachable, stopped or back."""

import logging
import shutil
import socket
import subprocess
import time

import pytest
import redis

from emotional_engine.config import Settings
from emotional_engine.domain import StoryRequest
from emotional_engine.storage import MultiLevelCache, Store, is_cacheable, request_cache_key
from emotional_engine.storage import cache as cache_module

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


class Timer:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def make_cache(redis_url, namespace, store):
    made = []

    def make(**kw) -> MultiLevelCache:
        kw = {"redis_url": redis_url, "store": store, "namespace": namespace, **kw}
        c = MultiLevelCache(**kw)
        made.append(c)
        return c

    yield make
    for c in made:
        c.close()


@pytest.fixture
def raw_redis(redis_url):
    r = redis.Redis.from_url(redis_url)
    yield r
    r.close()


def test_a_lower_hit_is_promoted_upwards(make_cache, store, raw_redis, namespace):
    store.cache_put("k", b"story", ttl_s=60)  # only in L3, as after a restart of every replica
    first = make_cache()
    assert first.get("k") == (b"story", "l3")
    assert raw_redis.get(namespace + "k") == b"story"  # copied into L2
    assert first.get("k") == (b"story", "l1")  # and into L1
    second = make_cache()  # another replica: empty L1, shared L2
    assert second.get("k") == (b"story", "l2")
    assert second.get("k") == (b"story", "l1")
    s = first.stats()
    assert (s["l1"]["hits"], s["l1"]["misses"], s["l2"]["misses"], s["l3"]["hits"]) == (1, 1, 1, 1)
    assert second.stats()["l2"]["hits"] == 1 and second.stats()["l3"]["hits"] == 0


def test_put_writes_through_every_level(make_cache, store, raw_redis, namespace):
    make_cache().put("k", b"v")
    assert store.cache_get("k") == b"v"
    assert raw_redis.get(namespace + "k") == b"v"
    assert make_cache().get("missing") == (None, None)


async def test_async_get_and_put_promote_the_same_way(make_cache, store, raw_redis, namespace):
    store.cache_put("k", b"async story", ttl_s=60)
    c = make_cache()
    assert await c.aget("k") == (b"async story", "l3")
    assert raw_redis.get(namespace + "k") == b"async story"
    assert await c.aget("k") == (b"async story", "l1")
    await c.aput("k2", b"v2")
    assert await make_cache().aget("k2") == (b"v2", "l2")
    assert store.cache_get("k2") == b"v2"
    await c.aclose()


def test_two_instances_share_redis(make_cache):
    make_cache(store=None).put("shared", b"from replica a")
    assert make_cache(store=None).get("shared") == (b"from replica a", "l2")


def test_each_level_expires(make_cache, store, clock, raw_redis, namespace):
    timer = Timer()
    c = make_cache(l1_ttl_s=10, l2_ttl_s=0.3, l3_ttl_s=30, timer=timer)
    c.put("k", b"v")
    assert 0 < raw_redis.pttl(namespace + "k") <= 300
    timer.t += 11  # L1 expired
    assert c.get("k") == (b"v", "l2")
    timer.t += 11
    time.sleep(0.4)  # L2 expired (Redis keeps time itself)
    assert c.get("k") == (b"v", "l3")
    timer.t += 11
    raw_redis.delete(namespace + "k")
    clock.advance(31)  # L3 expired
    assert c.get("k") == (None, None)


def test_the_in_process_level_is_bounded():
    c = MultiLevelCache(l1_size=2)
    for i in range(3):
        c.put(f"k{i}", b"v")
    assert c.get("k0") == (None, None)
    assert c.get("k2") == (b"v", "l1")


def test_built_from_settings(redis_url, namespace, store):
    settings = Settings(redis_url=redis_url, cache_l1_size=1, cache_ttl_s=120)
    c = MultiLevelCache.from_settings(settings, store, namespace=namespace)
    c.put("a", b"1")
    c.put("b", b"2")  # pushes "a" out of the one-entry L1
    assert c.get("a") == (b"1", "l2")
    assert store.cache_get("a") == b"1"
    assert MultiLevelCache.from_settings(Settings()).stats()["l2"]["configured"] is False
    c.close()


def test_values_are_bytes_and_keys_fit_every_level():
    with pytest.raises(TypeError, match="bytes"):
        MultiLevelCache().put("k", "a string")
    with pytest.raises(ValueError, match="1-64"):
        MultiLevelCache().put("k" * 65, b"v")
    with pytest.raises(ValueError, match="1-64"):
        MultiLevelCache().get("")


def test_events_feed_metrics(make_cache):
    seen = []
    c = make_cache(on_event=lambda level, outcome: seen.append((level, outcome)))
    c.get("nothing")
    assert seen == [("l1", "miss"), ("l2", "miss"), ("l3", "miss")]


# ---- degradation --------------------------------------------------------------------------------


def test_unreachable_redis_degrades_to_l1_and_l3_without_raising(store, caplog):
    timer = Timer()
    store.cache_put("old", b"from the store", ttl_s=60)
    c = MultiLevelCache(redis_url=DEAD_REDIS, store=store, timer=timer, retry_after_s=5)
    with caplog.at_level(logging.WARNING, logger=cache_module.__name__):
        c.put("new", b"v")
        assert c.get("new") == (b"v", "l1")
        assert c.get("old") == (b"from the store", "l3")
        assert c.get("old") == (b"from the store", "l1")
    assert store.cache_get("new") == b"v"
    stats = c.stats()["l2"]
    assert stats["errors"] == 1 and stats["skipped"] >= 2 and stats["available"] is False
    assert len([r for r in caplog.records if "127.0.0.1:1" in r.getMessage()]) == 1  # logged once
    timer.t += 6  # retry window passed: Redis is tried again (and still fails)
    assert c.get("other") == (None, None)
    assert c.stats()["l2"]["errors"] == 2


async def test_unreachable_redis_degrades_in_async_code_too(store):
    c = MultiLevelCache(redis_url=DEAD_REDIS, store=store)
    await c.aput("k", b"v")
    assert await MultiLevelCache(redis_url=DEAD_REDIS, store=store).aget("k") == (b"v", "l3")
    assert c.stats()["l2"]["errors"] == 1
    await c.aclose()


def test_unreachable_store_degrades_to_l1_and_l2(make_cache, namespace):
    dead_store = Store("postgresql+psycopg://postgres@127.0.0.1:1/none")
    c = make_cache(store=dead_store)
    c.put("k", b"v")
    assert make_cache(store=dead_store).get("k") == (b"v", "l2")
    assert c.stats()["l3"]["errors"] == 1 and c.stats()["l3"]["available"] is False
    dead_store.close()


@pytest.fixture
def private_redis(tmp_path):
    """A redis-server of our own on a free port, which the test may stop and start."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server not found (the Redis recovery test needs it: apt-get install redis-server)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []

    def start():
        procs.append(
            subprocess.Popen(
                [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                stdout=subprocess.DEVNULL,
            )
        )
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                return
            except redis.ConnectionError:
                time.sleep(0.05)
        pytest.fail("the private redis-server did not start")

    def stop():
        procs[-1].terminate()
        procs[-1].wait(10)

    start()
    yield f"redis://127.0.0.1:{port}/0", start, stop
    for p in procs:
        if p.poll() is None:
            p.terminate()
            p.wait(10)


def test_redis_stopped_then_back_recovers_by_itself(private_redis):
    url, start, stop = private_redis
    timer = Timer()
    c = MultiLevelCache(redis_url=url, timer=timer, retry_after_s=5)
    c.put("before", b"1")
    stop()
    c.put("during", b"2")  # no raise
    assert c.available("l2") is False
    start()  # an empty Redis is back
    assert c.get("never") == (None, None)  # still inside the retry window: not tried
    timer.t += 6
    c.put("after", b"3")
    assert c.available("l2") is True
    assert MultiLevelCache(redis_url=url).get("after") == (b"3", "l2")
    c.close()


async def test_a_ping_finds_redis_back_without_waiting_for_a_request_to_use_it(private_redis):
    """/readyz asks `aping`: a Redis that came back while no request used the cache is seen at once."""
    url, start, stop = private_redis
    c = MultiLevelCache(redis_url=url, timer=Timer(), retry_after_s=3600)
    stop()
    c.put("during", b"2")
    assert c.available("l2") is False and await c.aping() is False
    start()
    assert await c.aping() is True and c.available("l2") is True
    await c.aput("after", b"3")  # used again at once, not after the retry window
    assert MultiLevelCache(redis_url=url).get("after") == (b"3", "l2")
    await c.aclose()


# ---- keys -----------------------------------------------------------------------------------------


REQUEST = {"premise": "A heron waits.", "arc": "icarus", "culture": "ja-JP", "seed": 7, "words": 300}


def test_the_key_is_canonical_and_covers_everything_that_changes_the_output(monkeypatch):
    key = request_cache_key(REQUEST, "ab" * 32, {"adapter": "emotion-v1", "temperature": 0.8})
    assert len(key) == 64 and int(key, 16) >= 0
    reordered = dict(reversed(list(REQUEST.items())))
    assert request_cache_key(reordered, "ab" * 32, {"temperature": 0.8, "adapter": "emotion-v1"}) == key
    variants = [
        request_cache_key({**REQUEST, "seed": 8}, "ab" * 32, {"adapter": "emotion-v1", "temperature": 0.8}),
        request_cache_key(REQUEST, "cd" * 32, {"adapter": "emotion-v1", "temperature": 0.8}),
        request_cache_key(REQUEST, "ab" * 32, {"adapter": None, "temperature": 0.8}),
        request_cache_key(REQUEST, "ab" * 32, {"adapter": "emotion-v1", "temperature": 0.7}),
    ]
    monkeypatch.setattr(cache_module, "__version__", "9.9.9")
    variants.append(request_cache_key(REQUEST, "ab" * 32, {"adapter": "emotion-v1", "temperature": 0.8}))
    assert len({key, *variants}) == 6


def test_a_pydantic_request_keys_like_its_json():
    request = StoryRequest(**REQUEST)
    assert request_cache_key(request, "ab" * 32) == request_cache_key(request.model_dump(mode="json"), "ab" * 32)
    with pytest.raises(ValueError, match="sha256"):
        request_cache_key(request, "")


def test_only_seeded_requests_are_cacheable():
    assert is_cacheable(REQUEST)
    assert is_cacheable({**REQUEST, "seed": 0})
    assert not is_cacheable({**REQUEST, "seed": None})
    assert not is_cacheable({"premise": "no seed"})
    assert is_cacheable(StoryRequest(**REQUEST)) and not is_cacheable(StoryRequest(premise="p"))
