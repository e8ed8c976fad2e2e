"""How long the store's hot operations and each cache level take, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/storage_speed.py [--reps 200] [--postgres postgres@127.0.0.1:5432/test]
        [--redis redis://127.0.0.1:6379/0]

Store rows: median and p95 per call, and the ratio of the median to SQLite's for the same operation.
Cache rows: a get that is answered by each level, ratio against an L1 hit. All numbers come from
this one run. PostgreSQL work goes into a schema of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from urllib.parse import quote

import psycopg
import redis

from emotional_engine.storage import MultiLevelCache, Store

STORY = {"title": "t", "text": "word " * 2000, "scenes": [{"index": i, "text": "word " * 200} for i in range(10)]}
BEAT = {"text": "word " * 40, "measured": {"valence": 0.2, "emotion": "joy"}}


def timed(fn: Callable[[int], object], reps: int) -> list[float]:
    fn(-1)  # warm-up
    out = []
    for i in range(reps):
        t = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t) * 1000)
    return out


def summary(ms: list[float]) -> tuple[float, float]:
    ms = sorted(ms)
    return statistics.median(ms), ms[min(len(ms) - 1, int(0.95 * len(ms)))]


def store_rows(store: Store, reps: int) -> dict[str, list[float]]:
    plain, info = store.create_key("bench")
    key = info.id
    story_ids = [store.save_story(key, {"seed": 1}, STORY) for _ in range(3)]
    session = store.sessions.create(key, {"premise": "p"}, ttl_s=3600)
    for i in range(20):
        store.sessions.add_turn(session, key, f"action {i}", BEAT)
    turns_session = store.sessions.create(key, {"premise": "p"}, ttl_s=3600)
    value = os.urandom(20_000)
    store.cache_put("hot", value, 3600)
    return {
        "verify_key": timed(lambda i: store.verify_key(plain), reps),
        "add_turn (committed)": timed(lambda i: store.sessions.add_turn(turns_session, key, "act", BEAT), reps),
        "get_session (20 turns)": timed(lambda i: store.sessions.get(session, key), reps),
        "save_story (~20 KB JSON)": timed(lambda i: store.save_story(key, {"seed": i}, STORY), reps),
        "get_story": timed(lambda i: store.get_story(story_ids[i % 3], key), reps),
        "record_usage": timed(lambda i: store.record_usage(key, tokens=40), reps),
        "cache_get (hit)": timed(lambda i: store.cache_get("hot"), reps),
        "cache_put (20 KB)": timed(lambda i: store.cache_put(f"k{i}", value, 3600), reps),
    }


def cache_rows(redis_url: str, store: Store, reps: int) -> dict[str, list[float]]:
    value = os.urandom(20_000)  # about a 300-word story's JSON with its measurements
    ns = f"ee:bench:{uuid.uuid4().hex[:8]}:"
    l1 = MultiLevelCache(l1_size=1024)
    l1.put("k", value)
    ticks = itertools.count(0, 1000)  # each lookup sees its L1 entry already expired
    only_l2 = MultiLevelCache(l1_ttl_s=1, redis_url=redis_url, namespace=ns, timer=lambda: next(ticks))
    only_l2.put("k", value)
    only_l3 = MultiLevelCache(l1_ttl_s=1, store=store, timer=lambda: next(ticks))
    only_l3.put("k", value)
    rows = {
        "L1 hit (in-process)": timed(lambda i: l1.get("k"), reps),
        "L2 hit (Redis)": timed(lambda i: only_l2.get("k"), reps),
        "L3 hit (SQLite store)": timed(lambda i: only_l3.get("k"), reps),
    }
    r = redis.Redis.from_url(redis_url)
    for k in r.scan_iter(match=ns + "*"):
        r.delete(k)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=200)
    ap.add_argument("--postgres", default="postgres@127.0.0.1:5432/test", help="user@host:port/db")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = ap.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical cores, "
        f"Python {platform.python_version()}; {args.reps} calls per row, milliseconds"
    )

    user_host, db = args.postgres.rsplit("/", 1)
    user, hostport = user_host.split("@")
    host, port = hostport.split(":")
    admin = f"host={host} port={port} user={user} dbname={db}"
    schema = f"ee_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        with tempfile.TemporaryDirectory() as tmp:
            urls = {
                "SQLite (WAL, file)": f"sqlite:///{tmp}/engine.db",
                "PostgreSQL 127.0.0.1": f"postgresql+psycopg://{args.postgres}?options="
                + quote(f"-csearch_path={schema}"),
            }
            results, stores = {}, {}
            for name, url in urls.items():
                stores[name] = Store(url, cache_max_rows=100_000)
                stores[name].migrate()
                results[name] = store_rows(stores[name], args.reps)
            base = results["SQLite (WAL, file)"]
            print(f"\n{'operation':<26}{'backend':<22}{'median':>9}{'p95':>9}{'vs SQLite':>11}")
            for op in base:
                for name, rows in results.items():
                    med, p95 = summary(rows[op])
                    print(f"{op:<26}{name:<22}{med:>9.3f}{p95:>9.3f}{med / summary(base[op])[0]:>10.2f}x")

            cache = cache_rows(args.redis, stores["SQLite (WAL, file)"], args.reps)
            base_med = summary(cache["L1 hit (in-process)"])[0]
            print(f"\n{'cache get, 20 KB value':<26}{'':<22}{'median':>9}{'p95':>9}{'vs L1':>11}")
            for op, ms in cache.items():
                med, p95 = summary(ms)
                print(f"{op:<48}{med:>9.3f}{p95:>9.3f}{med / base_med:>10.1f}x")
            for s in stores.values():
                s.close()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


if __name__ == "__main__":
    main()
