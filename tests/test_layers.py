"""Imports run down the layers (tests/import_layers.py has the graph, the layers and the rules): no package
imports one above it, no two packages import each other, and no two modules of one package import each
other; the check is proven on planted upward imports and cycles in a fake package tree."""

from pathlib import Path

import pytest

from import_layers import NEVER, check, import_edges

SRC = Path(__file__).resolve().parents[1] / "src"


def test_imports_run_down_the_layers():
    report = check(import_edges(SRC))
    assert report.ok, f"\n{report}"


def _tree(root: Path, files: dict[str, str]) -> Path:
    """A fake `emotional_engine` under root/src with the given modules (path -> source); returns root/src."""
    pkg = root / "src" / "emotional_engine"
    for rel in ["__init__.py", *files]:
        path = pkg / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not (path.parent / "__init__.py").exists():
            (path.parent / "__init__.py").write_text("")
        path.write_text(files.get(rel, ""))
    return root / "src"


CLEAN = {
    "domain.py": "from emotional_engine.arcs import Arc\n",
    "arcs.py": "Arc = object\n",
    "text.py": "",
    "lm/__init__.py": "from .model import Llama\n",
    "lm/model.py": "from emotional_engine.config import Settings\nLlama = object\n",
    "config.py": "Settings = object\n",
    "memory/store.py": "from emotional_engine.lm import Llama\nfrom emotional_engine.text import x\n",
    "culture/names.py": "from . import profiles\n",
    "culture/profiles.py": "",
    "agents/cultural.py": "from emotional_engine.culture import names\nfrom emotional_engine.memory.store import y\n",
    "agents/character_check.py": "from emotional_engine.agents.cultural import z\n",
    "engine.py": "from emotional_engine.agents import cultural\n",
}


def test_a_tree_whose_imports_run_down_passes(tmp_path):
    report = check(import_edges(_tree(tmp_path, CLEAN)))
    assert report.ok, f"\n{report}"


@pytest.mark.parametrize(
    "planted",
    [
        "from emotional_engine.agents.cultural import z\n",
        "import emotional_engine.agents.cultural\n",
        "def f():\n    from emotional_engine.agents import cultural\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from emotional_engine.agents.cultural import z\n",
        "from ...agents import cultural\n",
        "import importlib\nmod = importlib.import_module('emotional_engine.agents.cultural')\n",
    ],
)
def test_an_upward_import_is_caught_in_every_form(tmp_path, planted):
    files = {**CLEAN, "memory/deep/recall.py": "# memory reaches up into agents\n" + planted}
    report = check(import_edges(_tree(tmp_path, files)))
    assert not report.ok
    assert [(e.packages, e.file, e.line) for e in report.upward] == [
        (("memory", "agents"), "src/emotional_engine/memory/deep/recall.py", planted.count("\n") + 1)
    ]
    assert "src/emotional_engine/memory/deep/recall.py:" in str(report)
    assert "memory (layer 2) -> agents (layer 3)" in str(report)


def test_a_never_pair_is_caught_though_it_runs_down(tmp_path):
    assert ("lm", "domain") in NEVER
    files = {**CLEAN, "lm/models.py": "from emotional_engine.domain import StoryRequest\n"}
    report = check(import_edges(_tree(tmp_path, files)))
    assert [e.file for e in report.upward] == ["src/emotional_engine/lm/models.py"]


def test_a_cycle_between_packages_of_one_layer_is_caught(tmp_path):
    files = {**CLEAN, "culture/names.py": "from emotional_engine.memory.store import y\n"}  # memory -> lm only
    files["memory/store.py"] += "def f():\n    from emotional_engine.culture.names import n\n"
    report = check(import_edges(_tree(tmp_path, files)))
    assert not report.upward and not report.module_cycles
    [(cycle, edges)] = report.package_cycles
    assert cycle == ["culture", "memory"]
    assert sorted(str(e) for e in edges) == [
        "src/emotional_engine/culture/names.py:1: emotional_engine.culture.names -> emotional_engine.memory.store",
        "src/emotional_engine/memory/store.py:4: emotional_engine.memory.store -> emotional_engine.culture.names",
    ]
    assert "a cycle between packages culture <-> memory" in str(report)


def test_a_cycle_between_agents_is_caught(tmp_path):
    files = {
        **CLEAN,
        "agents/cultural.py": CLEAN["agents/cultural.py"]
        + "def f():\n    from emotional_engine.agents.character_check import is_ordinary  # hidden\n",
    }
    report = check(import_edges(_tree(tmp_path, files)))
    assert not report.upward and not report.package_cycles
    [(cycle, edges)] = report.module_cycles
    assert cycle == ["emotional_engine.agents.character_check", "emotional_engine.agents.cultural"]
    assert {e.file for e in edges} == {
        "src/emotional_engine/agents/cultural.py",
        "src/emotional_engine/agents/character_check.py",
    }


def test_a_cycle_between_modules_of_any_package_is_caught(tmp_path):
    # the shape kv_cache.py and model.py had: an annotation's import under TYPE_CHECKING closes the loop
    files = {
        **CLEAN,
        "lm/kv_cache.py": "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from emotional_engine.lm.model import C\n",
        "lm/model.py": CLEAN["lm/model.py"] + "from emotional_engine.lm.kv_cache import KVCache\n",
    }
    report = check(import_edges(_tree(tmp_path, files)))
    assert not report.upward and not report.package_cycles
    [(cycle, edges)] = report.module_cycles
    assert cycle == ["emotional_engine.lm.kv_cache", "emotional_engine.lm.model"]
    assert sorted(str(e) for e in edges) == [
        "src/emotional_engine/lm/kv_cache.py:3: emotional_engine.lm.kv_cache -> emotional_engine.lm.model",
        "src/emotional_engine/lm/model.py:3: emotional_engine.lm.model -> emotional_engine.lm.kv_cache",
    ]
    assert "a cycle between modules emotional_engine.lm.kv_cache <-> emotional_engine.lm.model" in str(report)
    # looking only inside some packages (the check's former default was agents alone) misses it
    assert check(import_edges(_tree(tmp_path, files)), module_cycles_in=("agents",)).ok


def test_a_package_in_no_layer_is_caught(tmp_path):
    files = {**CLEAN, "federation/shard.py": "from emotional_engine.lm import Llama\n"}
    report = check(import_edges(_tree(tmp_path, files)))
    assert report.unplaced == ["federation"]
