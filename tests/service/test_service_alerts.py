"""The alert rules, checked and unit-tested with promtool (Debian package `prometheus`)."""

import shutil
import subprocess
from pathlib import Path

import pytest

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"


def _promtool() -> str:
    tool = shutil.which("promtool")
    if tool is None:
        pytest.fail("promtool is not installed: `make promtool` (apt-get install prometheus) — the alert tests need it")
    return tool


def test_alert_rules_are_valid_and_fire_as_specified():
    tool = _promtool()
    check = subprocess.run([tool, "check", "rules", "alerts.yml"], cwd=RULES, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run([tool, "test", "rules", "alerts_test.yml"], cwd=RULES, capture_output=True, text=True)
    assert test.returncode == 0, test.stdout + test.stderr


def test_the_dashboard_plots_the_metrics_the_service_exports():
    import json

    from emotional_engine.service.metrics import Metrics

    dashboard = json.loads((RULES.parent / "grafana" / "dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))
    exported = {m.name for m in Metrics().registry.collect()}
    used = {name for name in exported if name in exprs}
    assert {
        "ee_time_to_first_token_seconds",
        "ee_http_request_duration_seconds",
        "ee_cache_lookups",
        "ee_generation_queue_length",
        "ee_load_shed",
        "ee_story_quality",
    } <= used
