"""The stage boundaries, read from the source: which package of hubaudit may import which.

Every import counts: at module level, inside functions and under ``if TYPE_CHECKING:`` (a type
named in a signature is a dependency too). The units are the stages (one package each), the
pipeline that wires them, the CLI, the test and demo kit (``hubaudit.demo``) and the shared modules
(``hubaudit/*.py``: vocab, constants, errors, ...; and SHARED_PACKAGES, the shared vocabulary
``hubaudit.models``, whose private modules are its own). The rules:

- a shared module imports only shared modules;
- a stage imports shared modules and its own package, never another stage;
- pipeline imports shared modules and stages, never the CLI or the demo kit;
- the demo kit (the fake Hub, the adapter trainer, the demo flow) may import shared modules, stages and
  pipeline, never the CLI; its two kits stay small: ``demo.fakehub`` imports shared modules and itself,
  ``demo.synth`` (adapters trained for tests, the demo and the evals) also SYNTH_MAY_IMPORT;
- the CLI imports shared modules and pipeline, of the stages only CLI_MAY_IMPORT, and of the demo kit
  only CLI_DEMO_MAY_IMPORT (from ``hubaudit.cli.demo``, the ``hubaudit demo`` command);
- no module imports another package's private module or name (``_x``);
- no import cycle between modules that runs (``TYPE_CHECKING`` imports never run).

KNOWN_VIOLATIONS and KNOWN_CYCLES list what breaks a rule today, each with what fixing it
means. The test fails on anything new, and also when a listed entry is gone, so the lists only
shrink.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "hubaudit"

STAGES = frozenset({"calibrate", "executors", "fetch", "hub", "lineage", "probe", "psim", "report", "stats", "store"})
KINDS = {**dict.fromkeys(STAGES, "stage"), "pipeline": "pipeline", "cli": "cli", "demo": "demo"}
# Packages that are shared modules laid out as modules: importable by every unit, importing only shared ones.
SHARED_PACKAGES = frozenset({"models"})

# What the CLI takes from a stage besides pipeline calls (a dotted prefix: a module or one name).
CLI_MAY_IMPORT = {
    "hubaudit.store.Store": "a command opens the database once (settings resolved at the edge) and hands it on",
    "hubaudit.store.migrate": "`hubaudit db` is the migrations themselves: no other stage takes part",
    "hubaudit.stats.require_torch": "--allow-pickle needs the probe extra: checked before anything is opened",
    "hubaudit.executors.ExecutorName": "--executor choices, generated from the executor registry",
    "hubaudit.probe.modes": "--mode choices (MODES, ProbeMode)",
    "hubaudit.probe.batteries": "--battery: the built-in names, and a battery file read as the option's value",
    "hubaudit.probe.prober.ProbeOptions": "the prober's options, built from flags",
    "hubaudit.probe.search.SearchConfig": "the blind search's options, built from flags",
    "hubaudit.probe.invert.InversionConfig": "the trigger inversion's options, built from flags",
    "hubaudit.probe.prompting.DEFAULT_LABEL_WORDS": "the default of --label-words",
    "hubaudit.probe.prompting.DEFAULT_SYSTEM_PROMPT": "the default of --system-prompt",
    "hubaudit.psim.output.PROBE_FORMATS": "--format choices of `psim probe`, from the format registry",
    "hubaudit.psim.output.SCREEN_FORMATS": "--format choices of `psim screen`, from the format registry",
    "hubaudit.report.OutputFormat": "--format choices of `report`, from the format registry",
    "hubaudit.report.export.EXPORT_FORMATS": "--format choices of `export`, from the format registry",
    "hubaudit.report.Suppression": "the type of the parsed --suppress entries",
    "hubaudit.report.formats.sarif": "`scan --format sarif` shares the rules (ids, levels) of `report --format sarif`",
}
SYNTH_MAY_IMPORT = {
    "hubaudit.probe.prompting": "adapters are trained in the prompt format the prober reads (one source of truth)",
}
# The kits inside hubaudit.demo that tests, benchmarks and evals use on their own: what each may import
# besides shared modules and itself.
DEMO_KITS = {"hubaudit.demo.fakehub": {}, "hubaudit.demo.synth": SYNTH_MAY_IMPORT}
# What the CLI takes from the demo kit, and which command takes it.
CLI_DEMO_MAY_IMPORT = {
    "hubaudit.demo.flow.DemoOptions": "hubaudit.cli.demo",
    "hubaudit.demo.flow.run_demo": "hubaudit.cli.demo",
}

# (importing module, imported name) → what fixing it means. Findings, not permissions.
KNOWN_VIOLATIONS = {
    ("hubaudit.config", "hubaudit.executors.EXECUTORS"):
        "a shared module reads a stage's registry to validate `executor =`: the executor names belong in the "
        "shared vocabulary, with executors/ mapping each to its class",
    ("hubaudit.executors.probe_exec", "hubaudit.probe.task.release_probers"):
        "probe_exec wires the executor seam to the prober: it belongs in pipeline/, or takes the release hook",
    ("hubaudit.pipeline.similar", "hubaudit.store._fingerprint_cache.StoredRevision"):
        "pipeline reads the store's private fingerprint cache: the Store should offer what similar needs",
    ("hubaudit.pipeline.similar", "hubaudit.store._fingerprint_cache.packed_fingerprints"): "as above",
    ("hubaudit.pipeline.similar", "hubaudit.store._fingerprint_cache.repo_revisions"): "as above",
}  # fmt: skip
KNOWN_CYCLES = {
    frozenset({"hubaudit.stats.fingerprint", "hubaudit.stats.reader", "hubaudit.stats.scan"}):
        "fingerprint's exact comparison of two adapters (_open_side) uses reader's and scan's parsing; it belongs "
        "in a module of its own above them",
}  # fmt: skip


@dataclass(frozen=True)
class Edge:
    importer: str  # dotted module name
    target: str  # dotted name: a module, or module.name for `from module import name`
    line: int
    runtime: bool  # False under `if TYPE_CHECKING:`

    def __str__(self) -> str:
        return f"{self.importer} (line {self.line}) imports {self.target}"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


class _Imports(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool) -> None:
        self.module, self.is_package = module, is_package
        self.edges: list[Edge] = []
        self._typing_only = 0

    def visit_If(self, node: ast.If) -> None:
        if _is_type_checking(node.test):
            self._typing_only += 1
            for child in node.body:
                self.visit(child)
            self._typing_only -= 1
            for child in node.orelse:
                self.visit(child)
        else:
            self.generic_visit(node)

    def _add(self, target: str, line: int) -> None:
        if target == "hubaudit" or target.startswith("hubaudit."):
            self.edges.append(Edge(self.module, target, line, runtime=not self._typing_only))

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:  # relative: resolve against this module's package
            package = self.module.split(".")
            if not self.is_package:
                package = package[:-1]
            package = package[: len(package) - (node.level - 1)]
            base = ".".join(package + ([node.module] if node.module else []))
        for alias in node.names:
            self._add(f"{base}.{alias.name}", node.lineno)


def _scan() -> tuple[set[str], list[Edge]]:
    modules: set[str] = set()
    edges: list[Edge] = []
    for path in sorted(ROOT.rglob("*.py")):
        name = _module_name(path)
        modules.add(name)
        visitor = _Imports(name, path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(encoding="utf-8"), filename=str(path)))
        edges += visitor.edges
    return modules, edges


MODULES, EDGES = _scan()
PACKAGES = sorted(p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file())


def _unit(dotted: str) -> str:
    """The package a dotted name belongs to ("stats", "cli", ...), or "shared" for hubaudit/*.py and
    SHARED_PACKAGES."""
    parts = dotted.split(".")
    if len(parts) > 1 and parts[1] in KINDS:
        return parts[1]
    if parts[1:2] == ["__main__"]:
        return "entry"
    return "shared"


def _kind(unit: str) -> str:
    return KINDS.get(unit, unit)


def _covered(target: str, allowed: dict[str, str]) -> bool:
    return any(target == a or target.startswith(a + ".") for a in allowed)


def _within(dotted: str, prefix: str) -> bool:
    return dotted == prefix or dotted.startswith(prefix + ".")


def _kit_rule_broken(edge: Edge) -> str | None:
    """Which rule an import by one of DEMO_KITS breaks, or None (not a kit's import, or allowed)."""
    kit = next((k for k in DEMO_KITS if _within(edge.importer, k)), None)
    if kit is None or _within(edge.target, kit) or _unit(edge.target) == "shared":
        return None
    return None if _covered(edge.target, DEMO_KITS[kit]) else f"{kit} imports {edge.target} (a kit stays small)"


def _rule_broken(edge: Edge) -> str | None:
    """Which rule ``edge`` breaks, or None."""
    if (kit_rule := _kit_rule_broken(edge)) is not None:
        return kit_rule
    src, dst = _unit(edge.importer), _unit(edge.target)
    if src == dst or dst == "shared":
        return None
    kind, dst_kind = _kind(src), _kind(dst)
    if kind == "entry":
        return None if dst == "cli" else "hubaudit.__main__ only starts the CLI"
    if kind == "shared":
        return f"a shared module imports {dst}"
    if kind == "stage":
        return f"stage {src} imports {dst_kind} {dst}"
    if kind == "pipeline":
        return None if dst_kind == "stage" else f"pipeline imports {dst}"
    if kind == "demo":
        return None if dst_kind in ("stage", "pipeline") else f"the demo kit imports {dst_kind} {dst}"
    if kind == "cli":
        if dst == "pipeline" or _covered(edge.target, CLI_MAY_IMPORT):
            return None
        if dst == "demo":
            allowed = {t for t, cmd in CLI_DEMO_MAY_IMPORT.items() if cmd == edge.importer}
            return None if _covered(edge.target, allowed) else (
                f"the CLI imports the demo kit's {edge.target} (not in CLI_DEMO_MAY_IMPORT for {edge.importer})")
        return f"the CLI imports {dst_kind} {dst} (not in CLI_MAY_IMPORT: go through pipeline)"
    return f"unclassified package {src}"


def _private(edge: Edge) -> bool:
    """An import of another package's private module or name (shared hubaudit._x modules are for all, the
    private modules of SHARED_PACKAGES for their own package)."""
    src, dst = _unit(edge.importer), _unit(edge.target)
    parts = edge.target.split(".")
    if parts[1:2] and parts[1] in SHARED_PACKAGES and not _within(edge.importer, ".".join(parts[:2])):
        return any(p.startswith("_") and not p.startswith("__") for p in parts[2:])
    if src == dst or dst == "shared":
        return False
    inner = edge.target.split(".")[2:]
    return any(p.startswith("_") and not p.startswith("__") for p in inner)


def _findings() -> dict[tuple[str, str], str]:
    out: dict[tuple[str, str], str] = {}
    for edge in EDGES:
        why = _rule_broken(edge) or ("a private name of another package" if _private(edge) else None)
        if why is not None:
            out.setdefault((edge.importer, edge.target), f"{edge}: {why}")
    return out


def _resolve(target: str) -> str:
    """The module a dotted import target lives in (``hubaudit.stats.scan_path`` → ``hubaudit.stats``)."""
    while target not in MODULES:
        target = target.rpartition(".")[0]
    return target


def _cycles() -> list[frozenset[str]]:
    """Strongly connected components (more than one module) of the runtime import graph (Tarjan)."""
    graph: dict[str, set[str]] = defaultdict(set)
    for edge in EDGES:
        if edge.runtime:
            dst = _resolve(edge.target)
            if dst != edge.importer:
                graph[edge.importer].add(dst)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[frozenset[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(frozenset(component))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    return out


def test_the_parser_sees_every_kind_of_import():
    source = """
import hubaudit.stats
from hubaudit import safejson
from .sibling import thing
import numpy
if TYPE_CHECKING:
    from hubaudit.store import Store
else:
    from hubaudit.vocab import Verdict
def f():
    from hubaudit.report.formats import sarif
"""
    visitor = _Imports("hubaudit.cli.demo", is_package=False)
    visitor.visit(ast.parse(source))
    assert [(e.target, e.runtime) for e in visitor.edges] == [
        ("hubaudit.stats", True), ("hubaudit.safejson", True), ("hubaudit.cli.sibling.thing", True),
        ("hubaudit.store.Store", False), ("hubaudit.vocab.Verdict", True), ("hubaudit.report.formats.sarif", True),
    ]  # fmt: skip
    assert len(MODULES) > 100 and EDGES


def test_every_package_is_classified():
    unknown = [p for p in PACKAGES if p not in KINDS and p not in SHARED_PACKAGES]
    assert not unknown, f"classify {unknown} in tests/test_layering.py (STAGES, KINDS or SHARED_PACKAGES)"


def test_allowances_name_real_imports():
    targets = {e.target for e in EDGES}
    for allowed in (CLI_MAY_IMPORT, SYNTH_MAY_IMPORT, CLI_DEMO_MAY_IMPORT):
        stale = [a for a in allowed if not any(t == a or t.startswith(a + ".") for t in targets)]
        assert not stale, f"nothing imports {stale} any more: remove them from the allowances"


def test_the_auditing_code_never_imports_the_demo_kit():
    """The fake Hub, the trainer and the demo flow are a kit beside the auditor: of everything outside
    hubaudit.demo only the ``hubaudit demo`` command imports it."""
    users = sorted({e.importer for e in EDGES if _within(e.target, "hubaudit.demo")
                    and not _within(e.importer, "hubaudit.demo")})
    assert users == sorted(set(CLI_DEMO_MAY_IMPORT.values()))
    assert "demo" in PACKAGES and not (ROOT / "synth").exists() and not (ROOT / "hub" / "fakehub").exists()


def test_the_rules_catch_the_demo_kit_crossing_the_line():
    def why(importer: str, target: str) -> str | None:
        return _rule_broken(Edge(importer, target, 1, runtime=True))

    assert why("hubaudit.pipeline.crawl", "hubaudit.demo.fakehub.FakeHub") == "pipeline imports demo"
    assert why("hubaudit.stats.scan", "hubaudit.demo.synth.data") is not None
    assert why("hubaudit.cli.scan", "hubaudit.demo.flow.run_demo") is not None
    assert why("hubaudit.cli.demo", "hubaudit.demo.flow.run_demo") is None
    assert why("hubaudit.demo.flow", "hubaudit.pipeline.crawl.crawl") is None
    assert why("hubaudit.demo.flow", "hubaudit.cli.app") is not None
    assert why("hubaudit.demo.synth.train", "hubaudit.probe.prompting.label_prompt") is None
    assert why("hubaudit.demo.synth.train", "hubaudit.probe.prober") is not None
    assert why("hubaudit.demo.synth.cohort", "hubaudit.demo.flow") is not None
    assert why("hubaudit.demo.fakehub.server", "hubaudit.hub.source") is not None


def test_the_shared_vocabulary_package_is_shared():
    """hubaudit.models is importable by every unit and imports no stage; its private modules are its own."""
    def why(importer: str, target: str) -> str | None:
        edge = Edge(importer, target, 1, runtime=True)
        return _rule_broken(edge) or ("private" if _private(edge) else None)

    assert "models" in PACKAGES
    for importer in ("hubaudit.stats.scan", "hubaudit.cli.scan", "hubaudit.pipeline.check", "hubaudit.demo.flow",
                     "hubaudit.config", "hubaudit.demo.fakehub.server"):  # fmt: skip
        assert why(importer, "hubaudit.models.ScanResult") is None
        assert why(importer, "hubaudit.models.scan.ScanResult") is None
        assert why(importer, "hubaudit.models._record._Record") == "private"
    assert why("hubaudit.models.thresholds", "hubaudit.models._record._Record") is None
    assert why("hubaudit.models.scan", "hubaudit.vocab.ScanStatus") is None
    assert why("hubaudit.models.scan", "hubaudit.stats.scan") == "a shared module imports stats"


def test_stage_boundaries():
    found = _findings()
    new = sorted(why for key, why in found.items() if key not in KNOWN_VIOLATIONS)
    fixed = sorted(f"{a} -> {b}" for a, b in KNOWN_VIOLATIONS if (a, b) not in found)
    assert not new, "imports across the stage boundaries:\n" + "\n".join(new)
    assert not fixed, "fixed, so remove from KNOWN_VIOLATIONS:\n" + "\n".join(fixed)


def test_no_import_cycles():
    cycles = _cycles()
    new = sorted(sorted(c) for c in cycles if c not in KNOWN_CYCLES)
    fixed = sorted(sorted(c) for c in KNOWN_CYCLES if c not in cycles)
    assert not new, f"import cycles (modules importing each other, at any depth): {new}"
    assert not fixed, f"fixed, so remove from KNOWN_CYCLES: {fixed}"
