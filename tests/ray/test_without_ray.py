"""Ray is an optional extra: without it the package imports, the single-process server is built as ever,
and `serve --ray` says what to install."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

import emotional_engine.service
from emotional_engine.cli import app


def test_the_package_and_the_server_never_import_ray():
    code = (
        "import sys; import emotional_engine.cli, emotional_engine.service.app as a, emotional_engine.config as c; "
        "a.create_app(c.Settings(_env_file=None)); "
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], 'ray was imported'"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def test_serve_with_ray_missing_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray raises ImportError, as when it is not installed
    monkeypatch.delitem(sys.modules, "emotional_engine.service.ray_serve", raising=False)
    monkeypatch.delattr(emotional_engine.service, "ray_serve", raising=False)  # as if never imported
    monkeypatch.setenv("EE_DATABASE_URL", f"sqlite:///{tmp_path / 'e.db'}")
    result = CliRunner().invoke(app, ["serve", "--ray"])
    assert result.exit_code == 2
    assert "pip install 'emotional-engine[ray]'" in result.output


def test_serve_with_ray_refuses_bounds_the_wrong_way_round(monkeypatch, tmp_path):
    monkeypatch.setenv("EE_DATABASE_URL", f"sqlite:///{tmp_path / 'e.db'}")
    result = CliRunner().invoke(app, ["serve", "--ray", "--min-replicas", "3", "--max-replicas", "2"])
    assert result.exit_code == 2 and "--max-replicas is below --min-replicas" in result.output
