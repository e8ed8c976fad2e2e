"""`emotional-engine analyze` on a text whose mood turns, with the real emotion model."""

import pytest
from typer.testing import CliRunner

from emotional_engine.cli import app

pytestmark = pytest.mark.model


def test_analyze_prints_a_window_per_part_and_tracks_the_turn(tmp_path):
    happy = "We laughed and danced at the wedding, overjoyed and grateful. " * 6
    sad = "She wept alone at the grave, heartbroken and grieving for her son. " * 6
    f = tmp_path / "story.txt"
    f.write_text(happy + sad)
    png = tmp_path / "arc.png"
    result = CliRunner().invoke(app, ["analyze", str(f), "--windows", "4", "--plot", str(png)])
    assert result.exit_code == 0, result.output
    assert png.read_bytes()[:4] == b"\x89PNG"
    rows = [line.split() for line in result.stdout.strip().splitlines()[1:]]
    assert len(rows) == 4
    valences = [float(r[1]) for r in rows]
    assert valences[0] > 0.2 and valences[-1] < -0.2


def test_analyze_refuses_an_empty_file(tmp_path):
    f = tmp_path / "empty.txt"
    f.write_text("  \n")
    result = CliRunner().invoke(app, ["analyze", str(f)])
    assert result.exit_code == 2 and "empty" in result.stderr
