"""`emotional-engine play` with session files (--save, --load), character cards (--card, `card`), and the
`lore` commands on a saved session; the engine writes with a fake model."""

import json

import pytest
from typer.testing import CliRunner

from card_samples import card_blob
from emotional_engine import cards
from emotional_engine.cli import app
from fakes import FakeEmotion, FakeGenerator


@pytest.fixture(autouse=True)
def fake_engine(monkeypatch):
    import emotional_engine.engine as engine_module

    real = engine_module.Engine
    gen = FakeGenerator(write="The lamp turned. Ines read the letter twice.", reply=lambda call: "Ines read it.")
    monkeypatch.setattr(
        engine_module, "Engine", lambda *a, **k: real(generator=gen, emotion=FakeEmotion(), check_safety=False)
    )
    return gen


def run(*args, input=None):
    return CliRunner().invoke(app, [str(a) for a in args], input=input)


def test_a_saved_session_plays_on_where_it_stopped(tmp_path, fake_engine):
    f = tmp_path / "s.json"
    r = run("play", "--premise", "A keeper finds a letter.", "--seed", 1, "--save", f,
            input="I open the letter.\n/lore letter: The letter is from Tomas.\nI read it.\n\n")  # fmt: skip
    assert r.exit_code == 0, r.output
    saved = json.loads(f.read_text())
    assert [b["action"] for b in saved["beats"]] == ["I open the letter.", "I read it."]
    assert saved["request"]["lorebook"][0]["keys"] == ["letter"]
    assert "The letter is from Tomas." in fake_engine.streams[-1].user  # the entry came up in the next turn
    r = run("play", "--load", f, "--save", f, input="I walk on.\n\n")
    assert r.exit_code == 0 and "> I open the letter." in r.output  # the story so far, shown again
    assert [b["action"] for b in json.loads(f.read_text())["beats"]][-1] == "I walk on."


def test_lore_commands_edit_a_saved_sessions_lorebook(tmp_path):
    f = tmp_path / "s.json"
    run("play", "--premise", "A keeper finds a letter.", "--save", f, input="I wait.\n\n")
    bell = ["--key", "bell", "--key", "tower", "--content", "The bell rings at dusk."]
    assert run("lore", "add", f, *bell).exit_code == 0
    assert run("lore", "add", f, "--constant", "--content", "It always rains.").exit_code == 0
    assert run("lore", "change", f, 1, "--disabled").exit_code == 0
    listed = run("lore", "list", f).output.splitlines()
    assert listed == ["1. [bell, tower] (disabled) The bell rings at dusk.", "2. [always] It always rains."]
    assert run("lore", "delete", f, 1).exit_code == 0
    assert run("lore", "list", f).output.splitlines() == ["2. [always] It always rains."]
    missing = run("lore", "delete", f, 9)
    assert missing.exit_code == 2 and "no lorebook entry 9" in missing.stderr
    keyless = run("lore", "add", f, "--content", "floating")
    assert keyless.exit_code == 2 and "needs keys" in keyless.stderr


def test_a_card_starts_a_session_and_comes_back_out_of_it(tmp_path):
    card_file, f, out = tmp_path / "ines.json", tmp_path / "s.json", tmp_path / "ines.png"
    card_file.write_text(json.dumps(card_blob()))
    r = run("play", "--card", card_file, "--save", f, input="I walk to the storm wall.\n\n")
    assert r.exit_code == 0 and "Ines Varga (protagonist)" in r.output
    run("lore", "add", f, "--key", "Tomas", "--content", "Tomas is the brother.")
    assert run("card", f, "--out", out).exit_code == 0
    back = cards.read(out.read_bytes())
    entries = back.data.character_book.entries
    assert back.data.name == "Ines Varga" and [e.keys for e in entries] == [["Veil", "storm wall"], ["Tomas"]]
    original = cards.read(json.dumps(card_blob()).encode()).data.character_book.entries[0]
    assert entries[0].model_dump() == original.model_dump()  # the card's own entry, every field of it


def test_what_play_cannot_start_from_says_so(tmp_path):
    nothing = run("play")
    assert nothing.exit_code == 2 and "give --premise, --card or --load" in nothing.stderr
    (tmp_path / "x.json").write_text("{}")
    r = run("play", "--load", tmp_path / "x.json")
    assert r.exit_code == 2 and "not a session file" in r.stderr
    bad = card_blob()
    bad["data"].pop("name")
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    r = run("play", "--card", tmp_path / "bad.json")
    assert r.exit_code == 2 and "data.name" in r.stderr
