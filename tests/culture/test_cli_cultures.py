"""`emotional-engine cultures` lists every profile, one tag per line, then its name."""

from typer.testing import CliRunner

from emotional_engine.cli import app
from emotional_engine.culture import supported_cultures


def test_cultures_lists_every_profile():
    result = CliRunner().invoke(app, ["cultures"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    pairs = supported_cultures()
    assert len(lines) == len(pairs) >= 24
    for line, (tag, name) in zip(lines, pairs):
        assert line.split()[0] == tag
        assert line[len(tag) :].strip() == name
    assert any(ln.startswith("ja-JP") and "Japanese (Japan)" in ln for ln in lines)
