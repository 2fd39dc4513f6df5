"""No hubaudit module writes the process environment, read from the source.

Settings are read once at the edge and passed down; a library that flips ``HF_HUB_OFFLINE`` or any
other variable changes what every later caller in the process (a crawl, a test, an embedding
application) sees. Loading local weights offline is ``local_files_only=True`` on the call instead.
What counts as a write: assigning, augmenting or deleting ``os.environ[...]``, rebinding
``os.environ``, calling a mutating method of it (``setdefault``, ``pop``, ``update``, ...) and
``os.putenv``/``os.unsetenv``, under any import alias (``import os as o``, ``from os import environ``).
Reads (``os.environ.get``, ``os.environ[...]`` as a value, passing ``os.environ`` on) are fine.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "hubaudit"

_MUTATORS = frozenset({"setdefault", "pop", "popitem", "update", "clear", "__setitem__", "__delitem__", "__ior__"})
_ENV_FUNCS = frozenset({"putenv", "unsetenv"})


class _EnvWrites(ast.NodeVisitor):
    def __init__(self) -> None:
        self.os_names: set[str] = set()  # names bound to the os module
        self.environ_names: set[str] = set()  # names bound to os.environ
        self.func_names: set[str] = set()  # names bound to os.putenv / os.unsetenv
        self.found: list[tuple[int, str]] = []

    def visit_Import(self, node: ast.Import) -> None:
        for a in node.names:
            if a.name == "os":
                self.os_names.add(a.asname or "os")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module == "os":
            for a in node.names:
                if a.name == "environ":
                    self.environ_names.add(a.asname or a.name)
                elif a.name in _ENV_FUNCS:
                    self.func_names.add(a.asname or a.name)

    def _is_environ(self, node: ast.expr) -> bool:
        if isinstance(node, ast.Name):
            return node.id in self.environ_names
        return (isinstance(node, ast.Attribute) and node.attr == "environ" and isinstance(node.value, ast.Name)
                and node.value.id in self.os_names)

    def _target(self, t: ast.expr, line: int) -> None:
        if isinstance(t, ast.Subscript) and self._is_environ(t.value):
            self.found.append((line, "os.environ[...] is written"))
        elif self._is_environ(t):
            self.found.append((line, "os.environ is rebound"))
        elif isinstance(t, (ast.Tuple, ast.List)):
            for e in t.elts:
                self._target(e, line)

    def visit_Assign(self, node: ast.Assign) -> None:
        for t in node.targets:
            self._target(t, node.lineno)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        self._target(node.target, node.lineno)
        self.generic_visit(node)

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        if node.value is not None:
            self._target(node.target, node.lineno)
        self.generic_visit(node)

    def visit_Delete(self, node: ast.Delete) -> None:
        for t in node.targets:
            self._target(t, node.lineno)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        f = node.func
        if isinstance(f, ast.Attribute) and f.attr in _MUTATORS and self._is_environ(f.value):
            self.found.append((node.lineno, f"os.environ.{f.attr}()"))
        elif (isinstance(f, ast.Attribute) and f.attr in _ENV_FUNCS and isinstance(f.value, ast.Name)
              and f.value.id in self.os_names):
            self.found.append((node.lineno, f"os.{f.attr}()"))
        elif isinstance(f, ast.Name) and f.id in self.func_names:
            self.found.append((node.lineno, f"{f.id}()"))
        self.generic_visit(node)


def _writes(source: str) -> list[tuple[int, str]]:
    v = _EnvWrites()
    v.visit(ast.parse(source))
    return v.found


def test_the_checker_sees_every_kind_of_write():
    source = """
import os
import os as o
from os import environ as env, putenv
x = os.environ.get("A")
y = os.environ["B"]
f(os.environ)
d = dict(os.environ)
os.environ["A"] = "1"
o.environ.setdefault("A", "1")
env.pop("A", None)
del os.environ["A"]
os.environ["A"] += "x"
os.environ.update(A="1")
os.putenv("A", "1")
putenv("A", "1")
os.environ = {}
a, os.environ["B"] = 1, "2"
"""
    assert [line for line, _ in _writes(source)] == list(range(9, 19))  # each line from os.environ["A"] = "1" on


def test_no_module_writes_the_process_environment():
    found = []
    for path in sorted(ROOT.rglob("*.py")):
        for line, what in _writes(path.read_text(encoding="utf-8")):
            found.append(f"{path.relative_to(ROOT.parent)}:{line}: {what}")
    assert not found, "modules that change the process environment (pass the setting down instead):\n" + "\n".join(found)
