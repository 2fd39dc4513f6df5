"""``hubaudit similar`` over a base with 100,000 fingerprinted adapters (target: < 1 s end to end,
SQLite, this 2-core machine, Python start-up excluded). The baseline is measured in the same run.

Builds a SQLite store through the Store API: ``record_revisions_bulk`` of N scored revisions (small
synthetic scans), then ``save_fingerprints`` of one synthetic unit vector per revision (``--dim``,
default the real fingerprint length), so the on-disk growth the fingerprints cause is measured on
its own. Then times, for one query repo:

* ``similar`` in-process through the Typer app (store open + lookup + search + verdict join + table
  on stdout, redirected): **cold** (first call: the packed-matrix cache is built) and **warm**
  (repeated: served from the cache); also with the cache off (``Store.fingerprints``-like read every
  time);
* the same as a subprocess of the installed entry point, minus ``hubaudit --version`` (start-up:
  interpreter, imports of every command module);
* the **naive baseline**: every stored fingerprint read as a Python object
  (``Fingerprint.from_bytes`` per row), ``Fingerprint.similarity`` one by one, ``sorted``, then the
  verdicts from ``Store.audit_rows(base)`` (one row per adapter of the base).

Prints wall and CPU seconds, the ratio naive / similar, and the bytes stored per adapter: the
fingerprint blob, the database's growth per adapter from the fingerprints, and the cache file.

    .venv/bin/python benchmarks/bench_similar.py [--n 100000] [--dim 1024] [--repeat 5] [--db-dir DIR]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hubaudit.constants import FEATURESET_VERSION, FINGERPRINT_VERSION
from hubaudit.models import Fingerprint, ModuleStat, ScanResult

BASE = "bench/similar-base"
CHUNK = 10_000
QUERY_INDEX = 4321
SIMS = (0.98, 0.9, 0.8)  # planted near-copies of the query


def near(n: int) -> tuple[int, int, int]:
    return 17, n // 2 + 5, n - 999


def repo(i: int) -> str:
    return f"org{i % 997}/adapter-{i}"


def scans(lo: int, hi: int) -> list[dict]:
    out = []
    for i in range(lo, hi):
        mods = [ModuleStat(f"model.layers.{k}.self_attn.q_proj", k, "q_proj", "linear", 1536, 1536, 16, 2.0, 0.01, (0.1,))
                for k in range(4)]  # fmt: skip
        s = ScanResult(source="bench", status="ok", score=0.01, peft_type="LORA", variant="lora", rank=16, alpha=32.0,
                       target_modules=("q_proj", "v_proj"), n_modules=196, modules=mods,
                       features={"global_frobN_std": 0.01, "global_frobN_mean": 0.02},
                       content_sha256=f"{i:064x}", featureset_version=FEATURESET_VERSION)  # fmt: skip
        out.append({"repo_id": repo(i), "sha": f"{i:040x}", "status": "scored", "scan": s})
    return out


def unit_vectors(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def db_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))


def checkpoint(store) -> None:  # type: ignore[no-untyped-def]
    with store.engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")


def build(url: str, path: Path, n: int, dim: int) -> dict[str, float]:
    from hubaudit.store import Store

    rng = np.random.default_rng(0)
    out: dict[str, float] = {}
    with Store.open(url, create=True) as store:
        t = time.perf_counter()
        ids: list[int] = []
        for lo in range(0, n, CHUNK):
            ids += store.record_revisions_bulk(BASE, scans(lo, min(n, lo + CHUNK)))
        out["record_s"] = time.perf_counter() - t
        checkpoint(store)
        before = db_bytes(path)
        t = time.perf_counter()
        query = None
        for lo in range(0, n, CHUNK):
            v = unit_vectors(rng, min(n, lo + CHUNK) - lo, dim)
            if lo <= QUERY_INDEX < lo + CHUNK:
                query = v[QUERY_INDEX - lo].copy()
            for i, a in zip(near(n), SIMS):
                if lo <= i < lo + CHUNK and query is not None:
                    e = unit_vectors(rng, 1, dim)[0]
                    e -= (e @ query) * query
                    v[i - lo] = a * query + np.sqrt(1 - a * a) * e / np.linalg.norm(e)
            store.save_fingerprints([(ids[lo + k], Fingerprint(FINGERPRINT_VERSION, v[k], 196)) for k in range(len(v))])
        out["fingerprints_s"] = time.perf_counter() - t
        checkpoint(store)
        out["growth_bytes"] = (db_bytes(path) - before) / n
        out["db_bytes"] = db_bytes(path) / n
    return out


def naive(url: str, target_repo: str, top: int) -> tuple[float, float, list[str]]:
    """Fingerprints as Python objects, compared one by one, then every adapter's audit row."""
    from sqlalchemy import select

    from hubaudit.store import Store
    from hubaudit.store.schema import AdapterFingerprint, Revision

    t, c = time.perf_counter(), time.process_time()
    with Store.open(url, must_exist=True) as store:
        with store.engine.connect() as conn:
            rows = conn.execute(select(AdapterFingerprint.revision_id, Revision.repo_id, AdapterFingerprint.vec,
                                       AdapterFingerprint.n_modules)
                                .join(Revision, Revision.id == AdapterFingerprint.revision_id)
                                .where(AdapterFingerprint.version == FINGERPRINT_VERSION))  # fmt: skip
            prints = [(r.revision_id, r.repo_id, Fingerprint.from_bytes(FINGERPRINT_VERSION, r.vec, r.n_modules)) for r in rows]
        query = next(fp for _, rid, fp in prints if rid == target_repo)
        scored = sorted(((query.similarity(fp), rev, rid) for rev, rid, fp in prints if rid != target_repo), reverse=True)
        best = [(s, rev, rid) for s, rev, rid in scored if s >= 0.5][:top]
        verdicts = {r.revision_id: r.flagged for r in store.audit_rows(BASE)}
        names = [f"{rid} {verdicts.get(rev)}" for _, rev, rid in best]
    return time.perf_counter() - t, time.process_time() - c, names


def in_process(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    from typer.testing import CliRunner

    from hubaudit.cli.app import app

    t, c = time.perf_counter(), time.process_time()
    r = CliRunner(env=env).invoke(app, args)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    if r.exit_code != 0:
        raise SystemExit(f"similar failed: {r.exit_code} {r.stderr} {r.exception!r}")
    return wall, cpu, r.stdout


# In a fresh interpreter: register the commands (start-up), then run ``similar`` twice through the
# entry point. The first call also pays the imports done on first use (alembic for the schema check,
# SQLAlchemy's SQLite dialect, ...); the second is the work alone.
_FRESH = """
import contextlib, io, json, sys, time
t0 = time.perf_counter()
from hubaudit.cli.main import _register, main
_register()
t1 = time.perf_counter()
out, args = [], sys.argv[1:]
for _ in range(2):
    sys.argv = ["hubaudit", *args]
    t = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, exc.code
    out.append(time.perf_counter() - t)
print(json.dumps({"startup": t1 - t0, "first": out[0], "second": out[1]}))
"""


def fresh_process(cmd: list[str], env: dict[str, str], repeat: int) -> dict[str, float]:
    import json

    runs = [json.loads(subprocess.run([sys.executable, "-c", _FRESH, *cmd], env=env, check=True, capture_output=True,
                                      text=True).stdout) for _ in range(repeat)]  # fmt: skip
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def subprocess_wall(argv: list[str], env: dict[str, str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> int:
    from hubaudit.stats.fingerprint import DIM

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=DIM, help="fingerprint length (default: the real one)")
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--db-dir", default=None, help="reuse/keep the store here (default: a temporary directory)")
    args = p.parse_args()
    if args.n <= QUERY_INDEX + 1000:
        p.error(f"--n must be above {QUERY_INDEX + 1000}")

    tmp = Path(args.db_dir or tempfile.mkdtemp(prefix="bench-similar-"))
    tmp.mkdir(parents=True, exist_ok=True)
    path = tmp / f"similar-{args.n}-{args.dim}.db"
    url = f"sqlite:///{path}"
    built = None
    if not path.exists():
        built = build(url, path, args.n, args.dim)
    home = tmp / "home"
    shutil.rmtree(home, ignore_errors=True)
    env = dict(os.environ, HUBAUDIT_HOME=str(home), COLUMNS="100", NO_COLOR="1")
    import hubaudit.cli.similar  # noqa: F401 - registers the command on the app

    cmd = ["similar", repo(QUERY_INDEX), "--db", url]
    load0 = os.getloadavg()[0]
    cold = in_process(cmd, env)
    warm = [in_process(cmd, env) for _ in range(args.repeat)]
    (tmp / "not-a-dir").write_text("")  # a home under a file: no cache can be written
    nocache = [in_process(cmd, dict(env, HUBAUDIT_HOME=str(tmp / "not-a-dir" / "home"))) for _ in range(2)]
    naive_wall, naive_cpu, naive_rows = naive(url, repo(QUERY_INDEX), 10)
    load1 = os.getloadavg()[0]

    exe = Path(sys.executable).with_name("hubaudit")
    argv = [str(exe)] if exe.exists() else [sys.executable, "-m", "hubaudit"]
    start = subprocess_wall([*argv, "--version"], env, args.repeat)
    e2e = subprocess_wall([*argv, *cmd], env, args.repeat)
    fresh = fresh_process(cmd, env, args.repeat)
    cache_bytes = sum(f.stat().st_size for f in (home / "cache" / "fingerprints").glob("*")) / args.n

    shown = [line for line in warm[-1][2].splitlines() if line.startswith("│") and "adapter-" in line]
    planted = near(args.n)
    assert len(shown) == len(planted) and all(f"adapter-{i}@" in " ".join(shown) for i in planted), warm[-1][2]
    assert [r.split()[0] for r in naive_rows] == [repo(i) for i in planted], naive_rows

    med = statistics.median(w for w, _, _ in warm)
    med_cpu = statistics.median(c for _, c, _ in warm)
    print(f"store: SQLite  N={args.n:,} fingerprinted revisions of one base  dim={args.dim}  "
          f"{os.cpu_count()} CPUs, load average {load0:.1f} -> {load1:.1f}")  # fmt: skip
    if built:
        print(f"build: record_revisions_bulk {built['record_s']:.1f} s, save_fingerprints {built['fingerprints_s']:.1f} s")
        print(f"bytes per adapter: fingerprint blob {args.dim * 2} B (float16); database growth from the fingerprints "
              f"{built['growth_bytes']:,.0f} B; whole database {built['db_bytes']:,.0f} B")  # fmt: skip
    print(f"bytes per adapter: matrix cache {cache_bytes:,.0f} B (float32 + ids)")
    print(f"similar, cold (builds the cache)     {cold[0]:6.3f} s wall, {cold[1]:.3f} s CPU")
    print(f"similar, warm (median of {args.repeat})          {med:6.3f} s wall, {med_cpu:.3f} s CPU   target < 1 s")
    print(f"similar, cache off (median of 2)     {statistics.median(w for w, _, _ in nocache):6.3f} s wall")
    print(f"subprocess: similar {e2e:.3f} s - start-up (hubaudit --version) {start:.3f} s = {e2e - start:.3f} s end to end")
    print(f"fresh interpreter (median of {args.repeat}): start-up (imports, command registration) {fresh['startup']:.3f} s; "
          f"similar: first call {fresh['first']:.3f} s (with first-use imports), second {fresh['second']:.3f} s")  # fmt: skip
    print(f"baseline: Python objects one by one + audit_rows {naive_wall:6.3f} s wall, {naive_cpu:.3f} s CPU   "
          f"ratio naive/warm = {naive_wall / med:.1f}x wall, {naive_cpu / med_cpu:.1f}x CPU; naive/cold = "
          f"{naive_wall / cold[0]:.1f}x")  # fmt: skip
    if not args.db_dir:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
