"""API keys: shown once, stored hashed, verified in constant time, revocable."""

import pytest
from sqlalchemy import select

from emotional_engine.storage.schema import ApiKey


def test_a_new_key_verifies_and_is_stored_only_as_a_salted_hash(store):
    plain, info = store.create_key("game backend")
    assert plain.startswith("ee_") and len(plain) == 51
    assert info.name == "game backend" and plain.startswith(info.prefix) and info.revoked_at is None
    assert store.verify_key(plain) == info
    with store.engine.connect() as conn:
        row = conn.execute(select(ApiKey)).one()
    stored = " ".join(str(v) for v in row)
    assert plain not in stored and plain[len(info.prefix) :] not in stored
    other_plain, _ = store.create_key("game backend")
    assert other_plain != plain  # same name, different key, different salt


def test_wrong_malformed_and_unknown_keys_do_not_verify(store):
    plain, _ = store.create_key("k")
    flipped = plain[:-1] + ("0" if plain[-1] != "0" else "1")  # right prefix, wrong secret
    assert store.verify_key(flipped) is None
    assert store.verify_key("ee_" + "0" * 48) is None
    for bad in ["", "Bearer " + plain, plain.upper(), plain[:-1], plain + "0", "sk_" + plain[3:]]:
        assert store.verify_key(bad) is None


@pytest.mark.parametrize("by", ["id", "prefix", "plain"])
def test_revoked_keys_fail_to_verify(store, by):
    plain, info = store.create_key("to revoke")
    kept, _ = store.create_key("kept")
    ref = {"id": info.id, "prefix": info.prefix, "plain": plain}[by]
    assert store.revoke_key(ref) is True
    assert store.verify_key(plain) is None
    assert store.verify_key(kept) is not None
    assert store.revoke_key(ref) is False  # already revoked
    assert store.revoke_key("ee_nothere") is False
    listed = {k.id: k for k in store.list_keys()}
    assert listed[info.id].revoked_at is not None and len(listed) == 2


def test_list_keys_oldest_first(store, clock):
    names = ["a", "b", "c"]
    for n in names:
        store.create_key(n)
        clock.advance(1)
    assert [k.name for k in store.list_keys()] == names


@pytest.mark.parametrize("name", ["", "   ", "x" * 201])
def test_a_key_needs_a_sensible_name(store, name):
    with pytest.raises(ValueError, match="name"):
        store.create_key(name)
