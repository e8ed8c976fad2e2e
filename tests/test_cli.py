"""The `emotional-engine` CLI, run for real on the embedded model."""

import pytest
from typer.testing import CliRunner

from emotional_engine.cli import app

runner = CliRunner()


@pytest.mark.model
def test_lm_streams_a_completion_and_the_seed_fixes_it(embedded_path):
    args = ["lm", "Write one sentence about a heron.", "--max-tokens", "12", "--seed", "3"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert len(first.stdout.strip()) > 10
    assert "tokens" in first.stderr  # the closing line with counts and speed
    again = runner.invoke(app, args)
    assert again.stdout == first.stdout
    other = runner.invoke(app, [*args[:-1], "4"])
    assert other.exit_code == 0


def test_lm_refuses_a_file_that_is_not_gguf(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"this is not a model")
    result = runner.invoke(app, ["lm", "hi", "--model", str(bad)])
    assert result.exit_code == 2
    assert str(bad) in result.stderr and "not a GGUF file" in result.stderr


def test_lm_names_a_missing_file(tmp_path):
    missing = tmp_path / "nope.gguf"
    result = runner.invoke(app, ["lm", "hi", "--model", str(missing)])
    assert result.exit_code == 2
    assert str(missing) in result.stderr and "not found" in result.stderr


def test_arcs_lists_the_six_shapes():
    result = runner.invoke(app, ["arcs", "--points", "3"])
    assert result.exit_code == 0
    lines = result.stdout.strip().splitlines()
    assert [ln.split()[0] for ln in lines] == [
        "rags_to_riches",
        "tragedy",
        "man_in_a_hole",
        "icarus",
        "cinderella",
        "oedipus",
    ]
    rags = [float(x) for x in lines[0].split()[1:]]
    assert len(rags) == 3 and rags[0] < rags[1] < rags[2]


@pytest.mark.model
def test_lm_conditions_on_an_emotion_with_the_shipped_adapter(embedded_path):
    args = ["lm", "Write one sentence about a heron.", "--max-tokens", "8", "--seed", "1"]
    ok = runner.invoke(app, [*args, "--emotion", "fear"])
    assert ok.exit_code == 0, ok.output
    bad = runner.invoke(app, [*args, "--emotion", "bliss"])
    assert bad.exit_code == 2 and "choose one of joy" in bad.stderr
    off = runner.invoke(app, [*args, "--emotion", "fear", "--no-emotion-adapter"])
    assert off.exit_code == 2 and "no emotion adapter" in off.stderr


def test_train_command_lists_its_settings():
    result = runner.invoke(app, ["train", "emotion-adapter", "--help"])
    assert result.exit_code == 0
    for option in ("--layers", "--seq-len", "--steps", "--max-train-chunks", "--threads"):
        assert option in result.stdout


def test_train_register_lora_passes_its_settings_and_prints_the_held_out_loss(monkeypatch, tmp_path):
    from emotional_engine.lm.lora import LoraFile
    from emotional_engine.training import register

    seen = {}

    def fake_train(cfg, out, log):
        seen.update(cfg=cfg, out=out)
        return LoraFile("register", None, cfg.rank, [29], {"heldout_loss_base": 3.5, "heldout_loss_tuned": 3.25})

    monkeypatch.setattr(register, "train_on_brown", fake_train)
    out = tmp_path / "r.pt"
    result = runner.invoke(
        app, ["train", "register-lora", "--layers", "4", "--rank", "16", "--steps", "9", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert (seen["cfg"].layers, seen["cfg"].rank, seen["cfg"].steps, seen["out"]) == (4, 16, 9, out)
    assert "heldout_loss_base=3.500 heldout_loss_tuned=3.250" in result.stdout
    assert f"EE_REGISTER_LORA={out}" in result.stdout
