"""`emotional-engine optimize` at a tiny size, and the clear errors of bad inputs."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from emotional_engine.cli import app
from emotional_engine.lm.gguf import read_optimized
from tiny_lm import make_model, make_tokenizer_data, tiny_config, write_gguf

runner = CliRunner()


@pytest.fixture
def files(tmp_path):
    model = make_model(tiny_config(n_embd=256, head_dim=64, intermediate_size=512), std=0.05)
    text = tmp_path / "calibration.txt"
    text.write_text("The lighthouse keeper climbed the stairs with the letter in her hand. " * 40)
    return write_gguf(tmp_path / "parent.gguf", model, make_tokenizer_data()), text, tmp_path


def test_optimize_writes_the_model_and_reports_each_step(files, monkeypatch):
    parent, text, d = files
    monkeypatch.setenv("EE_CACHE_DIR", str(d / "cache"))
    out = d / "small.gguf"
    args = ["optimize", str(parent), "--out", str(out), "--prune", "ffn=0.5", "--heal-steps", "2",
            "--quant", "q4_k,token_embd=q8_0", "--calibration", str(text), "--window", "32"]  # fmt: skip
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert "step=prune ffn=0.5" in r.stdout and "step=heal" in r.stdout and "recipe=Q4_K,token_embd=Q8_0" in r.stdout
    assert [s["step"] for s in read_optimized(out)["steps"]] == ["prune", "heal", "quantise"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--quant", "q3_x"], "unknown format 'q3_x'"),
        (["--prune", "0.95"], r"ffn sparsity 0.95 is outside (0, 0.9]"),
        (["--prune", "0"], "outside (0, 0.9]"),
        (["--distil-layers", "9"], "a student needs 1 to 1 layers"),
        ([], "nothing to do"),
        (["--quant", "q8_0", "--calibration", "missing.txt"], "not 'brown' and not a file"),
    ],
)
def test_bad_inputs_fail_with_a_clear_message(files, extra, message):
    parent, text, d = files
    calibration = [] if "--calibration" in extra else ["--calibration", str(text)]
    r = runner.invoke(app, ["optimize", str(parent), "--out", str(d / "o.gguf"), *calibration, *extra])
    assert r.exit_code == 2 and message in r.output, r.output
    assert not (d / "o.gguf").exists()


def test_a_file_that_is_not_a_llama_gguf_is_refused(tmp_path):
    bad = tmp_path / "x.gguf"
    bad.write_bytes(b"not a model")
    r = runner.invoke(app, ["optimize", str(bad), "--out", str(tmp_path / "o.gguf"), "--quant", "q8_0"])
    assert r.exit_code == 2 and "not a GGUF file" in r.output
