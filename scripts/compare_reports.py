"""Render every report, export and status output of one store with two revisions of the code and compare them.

    .venv/bin/python scripts/compare_reports.py OLD_REV [NEW_REV] [--show-hunks] [--keep DIR]

The store is tests/report/golden.py's golden store, built once by the code of the working tree into a
temporary SQLite file. Each side gets its own copy of that file and renders every case of
``golden.cases()`` (every report format, every export format, ``status``) by running that revision's
``python -m hubaudit`` with PYTHONPATH at its code: a ``git worktree`` of the revision in a temporary
directory, or the working tree itself when NEW_REV is left out. The outputs are normalised as the golden
test normalises them (``golden.NORMALISATION``) and compared byte for byte: per case, ``identical`` or
``differs`` with a short summary (``--show-hunks``: every differing hunk, control characters escaped).

Schema: when a revision's migration head is not the database's revision, its copy is migrated first,
and the script says so: down to an older head by the working tree's ``hubaudit db downgrade`` (the newer
code holds the downgrade steps; tables and columns the older code does not know are dropped from the
copy, which it could not read anyway), up to a newer head by that revision's ``hubaudit db upgrade``.

Exit status: 0 when every case is identical, 1 when any differs or fails, 2 on a usage error.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.report import golden  # noqa: E402  (the repository root is on sys.path only now)


@dataclass
class Side:
    """One revision of the code: where it is and what it rendered."""

    label: str  # "OLD 3f3e9be" / "NEW working tree"
    code: Path  # the directory PYTHONPATH points at
    run_dir: Path  # holds its copy of the database and the suppression file
    home: Path  # HUBAUDIT_HOME, XDG dirs: nothing of the user's is read
    outputs: dict[str, tuple[int, str, str]] | None = None  # case name -> (exit status, normalised stdout, stderr)


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def python(code: Path, *args: str, cwd: Path, home: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """``python ARGS`` with ``code`` first on sys.path and an environment of its own."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("HUBAUDIT_", "XDG_", "PYTHONPATH"))}
    full = {**base, "PYTHONPATH": str(code), "HUBAUDIT_HOME": str(home / "hubaudit"), "XDG_DATA_HOME": str(home / "data"),
            "XDG_CONFIG_HOME": str(home / "config"), "HF_HUB_OFFLINE": "1", **golden.ENV, **(env or {})}  # fmt: skip
    return subprocess.run([sys.executable, *args], cwd=cwd, env=full, capture_output=True, text=True, encoding="utf-8")


@contextlib.contextmanager
def worktree(rev: str, directory: Path) -> Iterator[Path]:
    """A detached ``git worktree`` of ``rev`` at ``directory``, removed afterwards."""
    git("worktree", "add", "--detach", "--quiet", str(directory), rev)
    try:
        yield directory
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(directory)], cwd=ROOT, capture_output=True)
        subprocess.run(["git", "worktree", "prune"], cwd=ROOT, capture_output=True)


def db_revision(db: Path) -> str | None:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    return row[0] if row else None


def migration_head(side: Side) -> str:
    p = python(side.code, "-c", "from hubaudit.store import migrate; print(migrate.head())", cwd=side.run_dir, home=side.home)
    if p.returncode != 0:
        raise SystemExit(f"{side.label}: cannot read its migration head:\n{p.stderr[-2000:]}")
    return p.stdout.strip()


def knows(revision: str) -> bool:
    """Whether the working tree's migration chain holds ``revision`` (so it can downgrade to it)."""
    from hubaudit.store import migrate

    return migrate.is_known(revision)


def align_schema(side: Side) -> str:
    """Migrate ``side``'s database copy to its code's head; returns what was done, in words."""
    db = side.run_dir / golden.DB_NAME
    have, want = db_revision(db), migration_head(side)
    if have == want:
        return f"schema at {want}, this code's head: no migration"
    url = f"sqlite:///{db}"
    if knows(want):  # an older head: the working tree's code holds the steps down
        p = python(ROOT, "-m", "hubaudit", "db", "downgrade", want, "--yes", "--db", url, cwd=side.run_dir, home=side.home)
        how = f"downgraded {have} -> {want} by the working tree's `hubaudit db downgrade {want}`"
    else:  # a newer head: that revision's code holds the steps up
        p = python(side.code, "-m", "hubaudit", "db", "upgrade", "--db", url, cwd=side.run_dir, home=side.home)
        how = f"upgraded {have} -> {want} by its own `hubaudit db upgrade`"
    if p.returncode != 0 or db_revision(db) != want:
        raise SystemExit(f"{side.label}: migrating its copy failed ({how}):\n{p.stderr[-2000:]}")
    return f"its migration head is {want}, the store's {have}: {how}"


def render(side: Side) -> dict[str, tuple[int, str, str]]:
    out = {}
    for case in golden.cases():
        started = datetime.now(timezone.utc)
        p = python(side.code, "-m", "hubaudit", *case.args, cwd=side.run_dir, home=side.home)
        ended = datetime.now(timezone.utc)
        out[case.name] = (p.returncode, golden.normalise(p.stdout, started, ended), p.stderr)
    return out


def hunks(old: str, new: str) -> list[list[str]]:
    """The unified-diff hunks (old → new), each a list of lines, control characters escaped."""
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1))[2:]
    out: list[list[str]] = []
    for line in lines:
        if line.startswith("@@"):
            out.append([])
        out[-1].append(golden.visible(line, 400))
    return out


def compare(old: Side, new: Side, show_hunks: bool) -> int:
    assert old.outputs is not None and new.outputs is not None
    failed = 0
    width = max(len(n) for n in new.outputs)
    for name, (rc_new, text_new, err_new) in new.outputs.items():
        rc_old, text_old, err_old = old.outputs[name]
        if rc_old != 0 or rc_new != 0:
            failed += 1
            print(f"{name:<{width}}  FAILED  exit {rc_old} (old) / {rc_new} (new)")
            for label, rc, err in (("old", rc_old, err_old), ("new", rc_new, err_new)):
                if rc != 0:
                    print("\n".join(f"    {label}: {golden.visible(ln)}" for ln in err.strip().splitlines()[-5:]))
            continue
        if text_old == text_new:
            print(f"{name:<{width}}  identical")
            continue
        failed += 1
        hs = hunks(text_old, text_new)
        minus = sum(1 for h in hs for ln in h if ln.startswith("-"))
        plus = sum(1 for h in hs for ln in h if ln.startswith("+"))
        print(f"{name:<{width}}  differs: {len(hs)} hunk(s), -{minus} +{plus} lines")
        for i, h in enumerate(hs, 1):
            shown = h if show_hunks else [ln for ln in h if ln[:1] in "+-"][:2]
            print(f"    hunk {i} {h[0]}" if show_hunks else f"    hunk {i}: " + " | ".join(x[:160] for x in shown))
            if show_hunks:
                print("\n".join(f"      {ln}" for ln in h[1:]))
    return failed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old_rev", metavar="OLD_REV", help="git revision to compare from, e.g. 3f3e9be or HEAD")
    ap.add_argument("new_rev", metavar="NEW_REV", nargs="?", help="git revision to compare to (default: the working tree)")
    ap.add_argument("--show-hunks", action="store_true", help="print every differing hunk in full")
    ap.add_argument("--keep", type=Path, help="work in DIR and keep it (the store, both copies, the worktrees' outputs)")
    args = ap.parse_args()
    try:
        revs = [(f"OLD {args.old_rev}", git("rev-parse", "--verify", f"{args.old_rev}^{{commit}}"))]
        revs.append((f"NEW {args.new_rev}", git("rev-parse", "--verify", f"{args.new_rev}^{{commit}}"))
                    if args.new_rev else ("NEW working tree", None))  # fmt: skip
    except subprocess.CalledProcessError as exc:
        print(f"error: unknown revision: {exc.stderr.strip()}", file=sys.stderr)
        return 2

    with contextlib.ExitStack() as stack:
        if args.keep:
            args.keep.mkdir(parents=True, exist_ok=True)
            tmp = args.keep.resolve()
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="compare-reports-")))
        store = tmp / "store"
        shutil.rmtree(store, ignore_errors=True)
        print(f"building the golden store with the working tree's code: {store / golden.DB_NAME}", file=sys.stderr)
        db = golden.build_in_subprocess(store)
        print(f"store schema revision: {db_revision(db)}")
        sides = []
        for label, sha in revs:
            name = label.split()[0].lower()
            code = ROOT if sha is None else stack.enter_context(worktree(sha, tmp / f"worktree-{name}"))
            side = Side(f"{label}" + (f" ({sha[:10]})" if sha else ""), code, tmp / f"run-{name}", tmp / f"home-{name}")
            shutil.rmtree(side.run_dir, ignore_errors=True)
            side.run_dir.mkdir(parents=True)
            for f in (golden.DB_NAME, golden.SUPPRESS_NAME):
                shutil.copyfile(store / f, side.run_dir / f)
            print(f"{side.label}: {align_schema(side)}")
            print(f"rendering {len(list(golden.cases()))} outputs with {side.label} ...", file=sys.stderr)
            side.outputs = render(side)
            for case_name, (_, text, _) in side.outputs.items():
                (side.run_dir / case_name).write_text(text, encoding="utf-8", newline="")
            sides.append(side)
        old, new = sides
        print(f"\n{old.label} -> {new.label} (normalised: {'; '.join(golden.NORMALISATION)})\n")
        failed = compare(old, new, args.show_hunks)
        print(f"\n{failed} of {len(new.outputs or {})} output(s) differ or failed" if failed else "\nevery output is identical")
        if args.keep:
            print(f"kept in {tmp} (run-old/, run-new/: each side's database copy and normalised outputs)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
