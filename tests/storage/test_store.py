"""Every Store method on SQLite and PostgreSQL: stories, sessions, jobs, feedback, usage, L3 cache."""

from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from emotional_engine.config import Settings
from emotional_engine.storage import NotFoundError, SessionExpiredError, Store, default_database_url
from emotional_engine.storage.schema import TurnRow

STORY = {"title": "The Lighthouse", "text": "Mara found the letter.", "scenes": [{"index": 0, "text": "ü ✓"}]}


@pytest.fixture
def other_key(store) -> str:
    return store.create_key("someone else")[1].id


# ---- stories ----------------------------------------------------------------------------------


def test_a_story_round_trips_and_only_its_key_sees_it(store, key_id, other_key):
    story_id = store.save_story(key_id, {"premise": "p", "seed": 3}, STORY)
    assert store.get_story(story_id, key_id) == STORY
    assert store.get_story(story_id, other_key) is None
    assert store.get_story("0" * 32, key_id) is None


def test_saving_for_an_unknown_key_is_refused(store):
    with pytest.raises(NotFoundError):
        store.save_story("f" * 32, {}, STORY)


# ---- sessions ---------------------------------------------------------------------------------


def test_turns_append_in_order_and_undo_removes_the_last(store, key_id):
    sid = store.sessions.create(key_id, {"premise": "p"}, ttl_s=60)
    assert [store.sessions.add_turn(sid, key_id, f"act {i}", {"text": f"beat {i}"}) for i in range(3)] == [0, 1, 2]
    assert store.sessions.pop_turn(sid, key_id) == {"index": 2, "action": "act 2", "beat": {"text": "beat 2"}}
    assert store.sessions.add_turn(sid, key_id, "again", {"text": "new beat"}) == 2  # the index is reused after undo
    record = store.sessions.get(sid, key_id)
    assert [(t.index, t.action) for t in record.turns] == [(0, "act 0"), (1, "act 1"), (2, "again")]
    assert record.request == {"premise": "p"} and record.status == "active"


def test_concurrent_turns_of_one_session_queue_and_get_distinct_indexes(store, key_id):
    sid = store.sessions.create(key_id, {}, ttl_s=60)
    with ThreadPoolExecutor(4) as pool:
        indexes = list(pool.map(lambda i: store.sessions.add_turn(sid, key_id, f"a{i}", {"i": i}), range(24)))
    assert sorted(indexes) == list(range(24))
    turns = store.sessions.get(sid, key_id).turns
    assert [t.index for t in turns] == list(range(24)) and sorted(t.beat["i"] for t in turns) == list(range(24))


def test_undo_on_an_empty_session_returns_none(store, key_id):
    sid = store.sessions.create(key_id, {}, ttl_s=60)
    assert store.sessions.pop_turn(sid, key_id) is None


def test_a_key_cannot_see_or_play_another_keys_session(store, key_id, other_key):
    sid = store.sessions.create(key_id, {}, ttl_s=60)
    store.sessions.add_turn(sid, key_id, "a", {"text": "b"})
    assert store.sessions.get(sid, other_key) is None
    with pytest.raises(NotFoundError):
        store.sessions.add_turn(sid, other_key, "steal", {})
    with pytest.raises(NotFoundError):
        store.sessions.pop_turn(sid, other_key)
    assert store.sessions.touch(sid, other_key) is False
    assert store.sessions.delete(sid, other_key) is False
    assert len(store.sessions.get(sid, key_id).turns) == 1


def test_idle_sessions_expire_and_stay_readable(store, key_id, clock):
    idle = store.sessions.create(key_id, {}, ttl_s=60)
    store.sessions.add_turn(idle, key_id, "a", {"text": "b"})
    busy = store.sessions.create(key_id, {}, ttl_s=60)
    clock.advance(50)
    assert store.sessions.touch(busy, key_id) is True  # active again: 60 s from now
    clock.advance(20)
    assert store.sessions.get(idle, key_id).status == "expired"  # past its expiry even before the sweep
    assert store.sessions.expire_idle() == 1
    assert store.sessions.expire_idle() == 0
    record = store.sessions.get(idle, key_id)
    assert record.status == "expired" and [t.action for t in record.turns] == ["a"]
    with pytest.raises(SessionExpiredError, match="expired"):
        store.sessions.add_turn(idle, key_id, "late", {})
    with pytest.raises(SessionExpiredError):
        store.sessions.pop_turn(idle, key_id)
    assert store.sessions.touch(idle, key_id) is False
    assert store.sessions.get(busy, key_id).status == "active"
    assert store.sessions.expire_idle(clock.now + timedelta(seconds=60)) == 1


def test_a_turn_keeps_the_session_alive(store, key_id, clock):
    sid = store.sessions.create(key_id, {}, ttl_s=60)
    for _ in range(3):
        clock.advance(45)
        store.sessions.add_turn(sid, key_id, "a", {})
    record = store.sessions.get(sid, key_id)
    assert record.status == "active" and record.expires_at == clock.now + timedelta(seconds=60)


def test_deleting_a_session_deletes_its_turns(store, key_id):
    sid = store.sessions.create(key_id, {}, ttl_s=60)
    store.sessions.add_turn(sid, key_id, "a", {})
    assert store.sessions.delete(sid, key_id) is True
    assert store.sessions.get(sid, key_id) is None
    assert store.sessions.delete(sid, key_id) is False
    with store.engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(TurnRow)) == 0


def test_a_session_needs_a_positive_ttl(store, key_id):
    with pytest.raises(ValueError):
        store.sessions.create(key_id, {}, ttl_s=0)


# ---- jobs -------------------------------------------------------------------------------------


def test_a_job_checkpoints_survive_a_reopen_and_it_finishes(store_url, clock):
    store = Store(store_url, clock=clock)
    store.migrate()
    key = store.create_key("jobs")[1].id
    job = store.create_job(key, {"words": 5000})
    done_job = store.create_job(key, {"words": 100})
    assert store.get_job(job, key).status == "queued"
    assert store.checkpoint_job(job, {"scenes": [{"index": 0, "text": "first"}]}) is True
    story = store.save_story(key, {}, STORY)
    assert store.finish_job(done_job, story) is True
    store.close()

    restarted = Store(store_url, clock=clock)  # the server restarts
    restarted.migrate()
    unfinished = restarted.unfinished_jobs()
    assert [j.id for j in unfinished] == [job]
    assert unfinished[0].status == "running" and unfinished[0].progress["scenes"][0]["text"] == "first"
    assert restarted.get_job(done_job, key).story_id == story
    story2 = restarted.save_story(key, {}, STORY)
    assert restarted.finish_job(job, story2) is True
    assert restarted.finish_job(job, story2) is False  # already done
    assert restarted.unfinished_jobs() == []
    restarted.close()


def test_cancelling_stops_further_progress_and_only_the_owner_may(store, key_id, other_key):
    job = store.create_job(key_id, {})
    assert store.cancel_job(job, other_key) is False
    assert store.get_job(job, other_key) is None
    assert store.cancel_job(job, key_id) is True
    assert store.checkpoint_job(job, {"scenes": []}) is False  # the worker learns it should stop
    record = store.get_job(job, key_id)
    assert record.status == "cancelled" and record.progress == {}
    assert store.cancel_job(job, key_id) is False
    assert store.unfinished_jobs() == []


def test_a_failed_job_keeps_its_message(store, key_id):
    job = store.create_job(key_id, {})
    assert store.fail_job(job, "the model file is missing") is True
    record = store.get_job(job, key_id)
    assert record.status == "failed" and record.error == "the model file is missing"


# ---- feedback ---------------------------------------------------------------------------------


def test_feedback_on_own_targets_feeds_the_satisfaction_metric(store, key_id, other_key):
    story = store.save_story(key_id, {}, STORY)
    session = store.sessions.create(key_id, {}, ttl_s=60)
    assert store.satisfaction() == {"count": 0, "mean": None, "distribution": {1: 0, 2: 0, 3: 0, 4: 0, 5: 0}}
    for rating in (5, 4, 4):
        assert store.add_feedback("story", story, key_id, rating, "lovely") is not None
    assert store.add_feedback("session", session, key_id, 1) is not None
    assert store.add_feedback("story", story, other_key, 1) is None  # not theirs
    assert store.add_feedback("session", story, key_id, 1) is None  # a story id is not a session
    assert store.satisfaction() == {"count": 4, "mean": 3.5, "distribution": {1: 1, 2: 0, 3: 0, 4: 2, 5: 1}}
    assert store.satisfaction("story")["mean"] == pytest.approx(13 / 3)


@pytest.mark.parametrize(
    "kind,rating,comment",
    [
        ("story", 0, None),
        ("story", 6, None),
        ("story", 4.5, None),
        ("story", True, None),
        ("poem", 3, None),
        ("story", 3, "x" * 5001),
    ],
)
def test_bad_feedback_is_refused(store, key_id, kind, rating, comment):
    story = store.save_story(key_id, {}, STORY)
    with pytest.raises(ValueError):
        store.add_feedback(kind, story, key_id, rating, comment)


# ---- usage ------------------------------------------------------------------------------------


def test_usage_is_summed_per_key_per_minute(store, key_id, other_key, clock):
    store.record_usage(key_id, tokens=40)
    clock.advance(10)  # same minute
    store.record_usage(key_id, tokens=60)
    store.record_usage(other_key, requests=5, tokens=1)
    clock.advance(60)
    store.record_usage(key_id, requests=2, tokens=7)
    usage = store.usage(key_id)
    assert (usage.requests, usage.tokens) == (4, 107)
    assert [(w.requests, w.tokens) for w in usage.minutes] == [(2, 100), (2, 7)]
    assert usage.minutes[1].minute - usage.minutes[0].minute == timedelta(minutes=1)
    assert store.usage(key_id, since=usage.minutes[1].minute).tokens == 7
    assert store.usage(other_key).requests == 5
    with pytest.raises(ValueError):
        store.record_usage(key_id, tokens=-1)


# ---- the cache's third level ------------------------------------------------------------------


def test_cache_rows_expire(store, clock):
    store.cache_put("k", b"\x00story bytes\xff", ttl_s=30)
    assert store.cache_get("k") == b"\x00story bytes\xff"
    clock.advance(31)
    assert store.cache_get("k") is None


def test_cache_put_replaces_and_refreshes(store, clock):
    store.cache_put("k", b"old", ttl_s=30)
    clock.advance(20)
    store.cache_put("k", b"new", ttl_s=30)
    clock.advance(20)
    assert store.cache_get("k") == b"new"


def test_cache_keys_are_limited_the_same_on_every_backend(store):
    store.cache_put("k" * 64, b"v", ttl_s=30)
    with pytest.raises(ValueError, match="1-64"):
        store.cache_put("k" * 65, b"v", ttl_s=30)
    with pytest.raises(ValueError, match="1-64"):
        store.cache_get("")


def test_cache_keeps_only_the_newest_rows(store, clock):  # the fixture's store holds 5 rows at most
    for i in range(8):
        store.cache_put(f"k{i}", str(i).encode(), ttl_s=3600)
        clock.advance(1)
    assert [store.cache_get(f"k{i}") for i in range(8)] == [None, None, None, b"3", b"4", b"5", b"6", b"7"]


# ---- health -----------------------------------------------------------------------------------


def test_ping_says_whether_the_database_answers(store):
    assert store.ping() is True
    down = Store("postgresql+psycopg://postgres@127.0.0.1:1/none")
    assert down.ping() is False
    down.close()


@pytest.mark.parametrize(
    "url,message", [("not a url", "not a database URL"), ("mysql://u@h/db", "'mysql' is not supported")]
)
def test_a_bad_database_url_is_named(url, message):
    with pytest.raises(ValueError, match=message):
        Store(url)


def test_the_default_database_is_a_file_under_the_cache_dir_or_the_users_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_database_url(Settings(cache_dir=tmp_path / "c")) == f"sqlite:///{tmp_path / 'c' / 'engine.db'}"
    assert (
        default_database_url(Settings(cache_dir=None))
        == f"sqlite:///{tmp_path / 'home' / '.local' / 'share' / 'emotional-engine' / 'engine.db'}"
    )
    assert Store.from_settings(Settings(database_url="sqlite://")).ping()  # in memory


def test_a_job_is_held_by_one_worker_until_its_lease_runs_out(store, key_id, clock):
    job = store.create_job(key_id, {})
    assert store.claimable_jobs() == [job]
    assert store.claim_job(job, "a", 30).id == job
    assert store.claim_job(job, "b", 30) is None  # a holds it
    assert store.claimable_jobs() == []
    assert store.checkpoint_job(job, {"scenes_done": 1}, "b") is False  # b may not write to it
    assert store.checkpoint_job(job, {"scenes_done": 1}, "a") is True
    clock.advance(20)
    assert store.claim_job(job, "a", 30) is not None  # renewed: 30 s from now
    clock.advance(20)
    assert store.claim_job(job, "b", 30) is None
    clock.advance(11)  # a stopped renewing: its lease ran out
    assert store.claimable_jobs() == [job]
    taken = store.claim_job(job, "b", 30)
    assert taken.progress == {"scenes_done": 1}
    assert store.checkpoint_job(job, {"scenes_done": 2}, "a") is False  # a learns it lost the job
    assert store.release_job(job, "b") is True and store.claimable_jobs() == [job]
    assert store.claim_job(job, "a", 30) is not None
    assert store.finish_job(job, store.save_story(key_id, {}, STORY), "a") is True
    assert store.claimable_jobs() == [] and store.claim_job(job, "b", 30) is None  # done jobs are nobody's
