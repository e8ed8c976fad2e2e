"""The import graph of a package tree, read with `ast` (nothing is imported), and the layering rules it
must keep; `tests/test_layers.py` runs the check on src/emotional_engine and on planted fakes.

Every import counts: absolute and relative ones, those inside functions and under `if TYPE_CHECKING:`,
and `importlib.import_module("pkg.x")` with a constant name. A module's package is the first name
under the root (`emotional_engine.agents.cultural` -> `agents`; a top-level module is its own
package, `emotional_engine.domain` -> `domain`; the root's `__init__.py` is `__init__`).

Rules (`check`): every package has a layer; a package imports only packages of lower layers, or of
its own layer where that makes no cycle, and never a pair in NEVER; no cycle between packages at
all; no cycle between the modules inside a package (inside each one named in `module_cycles_in`;
every package when it is None).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

# bottom to top: a package may import anything below, its own layer where no cycle results, never above
LAYERS: list[set[str]] = [
    {"config", "domain", "arcs", "text", "threads", "culture_tags", "version"},  # basics
    {"lm", "storage"},
    {"memory", "safety", "emotion", "culture", "cards"},
    {"agents"},
    {"engine", "session", "training", "optimize"},
    {"service", "plotting"},
    {"cli", "__init__", "deploy"},
]
# below, yet still never: the language-model runtime knows nothing of stories (domain's StoryRequest)
NEVER: set[tuple[str, str]] = {("lm", "domain")}


@dataclass(frozen=True)
class Edge:
    """One import: module `source` (in `file` at `line`) imports module `target`."""

    source: str
    target: str
    file: str
    line: int

    @property
    def packages(self) -> tuple[str, str]:
        return package_of(self.source), package_of(self.target)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.source} -> {self.target}"


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path, src: Path) -> tuple[str, bool]:
    """(dotted module name, is a package's __init__) of a file under `src`."""
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def import_edges(src: str | Path, root: str = "emotional_engine") -> list[Edge]:
    """Every import of a module of `root` by a module of `root`, for the tree `src/<root>`."""
    src = Path(src)
    files = sorted((src / root).rglob("*.py"))
    modules = {_module_name(f, src)[0] for f in files}
    edges = []
    for f in files:
        name, is_pkg = _module_name(f, src)
        here = name if is_pkg else name.rpartition(".")[0]  # the package relative imports start from
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"), str(f))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = here.split(".")[: len(here.split(".")) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                # `from pkg import mod` imports the module pkg.mod; `from mod import name`, the module mod
                targets = [f"{module}.{a.name}" if f"{module}.{a.name}" in modules else module for a in node.names]
            elif (
                isinstance(node, ast.Call)
                and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                targets = [node.args[0].value]
            rel = f.relative_to(src.parent).as_posix()
            for t in dict.fromkeys(targets):
                if t == root or t.startswith(root + "."):
                    edges.append(Edge(name, t, rel, node.lineno))
    return edges


def layer_of(package: str) -> int | None:
    return next((i for i, names in enumerate(LAYERS) if package in names), None)


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan), each sorted; a self-loop is none."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_graph(edges: list[Edge]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for e in edges:
        a, b = e.packages
        graph.setdefault(a, set())
        if a != b:
            graph[a].add(b)
    return graph


@dataclass
class Report:
    upward: list[Edge]  # into a higher layer, or a pair in NEVER
    unplaced: list[str]  # packages in no layer
    package_cycles: list[tuple[list[str], list[Edge]]]  # each cycle, with the imports that make it
    module_cycles: list[tuple[list[str], list[Edge]]]

    @property
    def ok(self) -> bool:
        return not (self.upward or self.unplaced or self.package_cycles or self.module_cycles)

    def __str__(self) -> str:
        lines = []
        if self.unplaced:
            lines.append("packages in no layer (add them to LAYERS): " + ", ".join(self.unplaced))
        if self.upward:
            lines.append("imports into a higher layer (or in NEVER):")
            lines += [
                f"  {e}  [{e.packages[0]} -> {e.packages[1]}: in NEVER]"
                if e.packages in NEVER
                else f"  {e}  [{e.packages[0]} (layer {layer_of(e.packages[0])}) -> {e.packages[1]} "
                f"(layer {layer_of(e.packages[1])})]"
                for e in self.upward
            ]
        for kind, cycles in (("packages", self.package_cycles), ("modules", self.module_cycles)):
            for cycle, edges in cycles:
                lines.append(f"a cycle between {kind} {' <-> '.join(cycle)}:")
                lines += [f"  {e}" for e in edges]
        return "\n".join(lines) or "ok"


def check(edges: list[Edge], module_cycles_in: tuple[str, ...] | None = None) -> Report:
    """The rules above over `edges`."""
    packages = sorted({p for e in edges for p in e.packages})
    unplaced = [p for p in packages if layer_of(p) is None]
    upward = [
        e
        for e in edges
        if None not in (layer_of(e.packages[0]), layer_of(e.packages[1]))
        and layer_of(e.packages[1]) > layer_of(e.packages[0])
        or e.packages in NEVER
    ]
    package_cycles = []
    for cycle in _cycles(package_graph(edges)):
        members = set(cycle)
        package_cycles.append(
            (
                cycle,
                [
                    e
                    for e in edges
                    if e.packages[0] != e.packages[1] and e.packages[0] in members and e.packages[1] in members
                ],
            )
        )
    module_cycles = []
    for pkg in packages if module_cycles_in is None else module_cycles_in:
        inside = [e for e in edges if e.packages == (pkg, pkg) and e.source != e.target]
        graph: dict[str, set[str]] = {}
        for e in inside:
            graph.setdefault(e.source, set()).add(e.target)
        for cycle in _cycles(graph):
            members = set(cycle)
            module_cycles.append((cycle, [e for e in inside if e.source in members and e.target in members]))
    return Report(upward, unplaced, package_cycles, module_cycles)
