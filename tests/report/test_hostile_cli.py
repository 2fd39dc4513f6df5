"""Hostile names through every human-readable command output, the way a user runs the CLI.

In-process through the real entry point (``hubaudit.cli.main.main`` via tests/_cli.py: the error
table, exit codes); one test runs the installed script in real subprocesses for its exit codes and
"no traceback". The store is a
real SQLite file whose repo ids, shas, tensor (projection) names, strata and declared bases are hostile.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hubaudit.report import OutputFormat
from tests._cli import run_cli
from tests.report.conftest import write_lora
from tests.report.hostile import (
    HOSTILE_SETTINGS,
    assert_csv_safe,
    assert_html_safe,
    assert_markdown_safe,
    assert_terminal_safe,
    controls,
    hostile_text,
    hostile_text_surrogates,
)

HUBAUDIT = str(Path(sys.executable).with_name("hubaudit"))
BASE = "acme/tiny-base"
# A projection (tensor name part) and target module that is markup, mathtext, an escape sequence and HTML.
EVIL_PROJ = "$\\foo$[/][bold]\x1b[2J|<svg>=\u202e"
EVIL_DECLARED = "evil[/]x\x1b]0;title\x07\r\x9b31m"
HOSTILE_ROWS = (
    ("evil/x\x1b]0;title\x07\x1b[2J\r[bold]B[/]\x9b31m\u202e", "0) <svg onload=alert(1)> | [x](javascript:alert(1))"),
    ("=cmd|' /C calc'!A0", "+sha-1"),
    ("@SUM(1+1)", "-2+3"),
    ("evil/$\\foo$`code`|*x*_y_", "\t=1+1\n"),
)


def cli(*args: str) -> tuple[int, str, str]:
    """``hubaudit ARGS`` in-process (tests/_cli.py): (exit code, stdout, stderr)."""
    r = run_cli(*args)
    return r.returncode, r.stdout, r.stderr


def assert_clean_run(code: int, out: str, err: str, *, codes: tuple[int, ...], out_allowed: str = "\n") -> None:
    assert code in codes, (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    assert_terminal_safe(err)
    assert_terminal_safe(out, out_allowed)


@pytest.fixture(scope="module", autouse=True)
def _home(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HUBAUDIT_HOME", str(tmp_path_factory.mktemp("home")))
        mp.delenv("HUBAUDIT_DB_URL", raising=False)
        yield


@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory):
    """(db url, calibrate's (code, stdout, stderr)): 34 clean adapters and the hostile outliers of BASE."""
    from hubaudit.stats import scan_path
    from hubaudit.store import Store

    root = tmp_path_factory.mktemp("hostile")
    url = f"sqlite:///{root / 'h.db'}"
    proj = ("q_proj", EVIL_PROJ)
    with Store.open(url, create=True) as store:
        for i in range(34):
            scan = scan_path(write_lora(root / f"c{i}", seed=i, proj=proj))
            assert scan.status == "ok", scan.error
            store.upsert_adapter(BASE, f"org/c{i}", meta={"sha": f"{i:040x}"})
            store.record_revision(base=BASE, repo_id=f"org/c{i}", sha=f"{i:040x}", status="scored",
                                  declared_base=scan.base_model, scan=scan)  # fmt: skip
        scan = scan_path(write_lora(root / "evil", seed=999, hot=8.0, base=EVIL_DECLARED, proj=proj))
        assert scan.status == "ok", scan.error
        for repo, sha in HOSTILE_ROWS:
            store.upsert_adapter(BASE, repo, meta={"sha": sha})
            store.record_revision(base=BASE, repo_id=repo, sha=sha, status="scored", declared_base=scan.base_model,
                                  scan=scan)  # fmt: skip
        store.upsert_adapter(BASE, "[/]bad\x1b[2J", meta={"sha": "\x9b"})
        store.record_revision(base=BASE, repo_id="[/]bad\x1b[2J", sha="\x9b", status="error", reason="[bold]x\x07",
                              error="header [/] says \x1b]0;pwned\x07")  # fmt: skip
    calibrated = cli("calibrate", "--base", BASE, "--db", url, "--min-n", "30")
    return url, calibrated, root


def test_calibrate_table_escapes_hostile_strata(hostile_store):
    _, (code, out, err), _ = hostile_store
    assert_clean_run(code, out, err, codes=(0,), out_allowed="\n\t")
    lines = out.splitlines()
    assert lines and all(len(line.split("\t")) == 5 for line in lines)
    assert any("\\x1b[2J" in line for line in lines)  # the stratum names the hostile target module, visibly


@pytest.mark.parametrize("fmt", [f.value for f in OutputFormat])
def test_report_every_format(hostile_store, fmt):
    url, _, _ = hostile_store
    code, out, err = cli("report", "--base", BASE, "--db", url, "--format", fmt)
    assert_clean_run(code, out, err, codes=(0,), out_allowed="\n")
    if fmt == "table":
        assert "Flagged adapter revisions (4)" in out and "\\x1b]0;title\\x07" in out
    elif fmt == "csv":
        assert_csv_safe(out)
    elif fmt == "markdown":
        assert_markdown_safe(out)
    elif fmt == "html":
        assert_html_safe(out)
        assert out.count('class="plot heatmap"') == 4  # the $\foo$ projection is a tick label on each
    else:
        if fmt == "json":
            repos = {a["repo_id"] for a in json.loads(out)["adapters"]}
        elif fmt == "jsonl":
            repos = {d.get("repo_id") for d in map(json.loads, out.splitlines())}
        elif fmt == "cyclonedx":
            repos = {p["value"] for c in json.loads(out)["components"] for p in c["properties"] if p["name"] == "hubaudit:repo_id"}
        else:
            repos = {r["properties"]["repo_id"] for r in json.loads(out)["runs"][0]["results"]}
        assert {repo for repo, _ in HOSTILE_ROWS} <= repos  # JSON carries the data unchanged


@pytest.mark.parametrize("fmt", ["csv", "json", "jsonl"])
def test_export(hostile_store, fmt):
    url, _, _ = hostile_store
    code, out, err = cli("export", "--base", BASE, "--db", url, "--format", fmt)
    assert_clean_run(code, out, err, codes=(0,))
    if fmt == "csv":
        assert_csv_safe(out)
        assert len(out.splitlines()) == 1 + len(HOSTILE_ROWS)


def _name(s: str) -> str:
    """A file name from hostile text ('/' and NUL are the bytes a POSIX name cannot hold)."""
    s = s.replace("/", "\u2215").replace("\x00", "") or "x"
    return "x" + s if s in (".", "..") else s[:80]


@HOSTILE_SETTINGS
@given(name=hostile_text, declared=hostile_text, proj=hostile_text, judge_as_base=st.booleans(), fmt=st.sampled_from(["table", "json"]))
def test_check_a_hostile_adapter(hostile_store, tmp_path_factory, name, declared, proj, judge_as_base, fmt):
    url, _, _root = hostile_store
    proj = proj.replace(".", "_").replace("\n", "_") or "p"  # one module-path part
    d = write_lora(tmp_path_factory.mktemp("c") / _name(name), seed=5, base=declared, proj=("q_proj", proj))
    args = ["check", str(d), "--db", url, "--offline", "--format", fmt] + (["--base", BASE] if judge_as_base else [])
    code, out, err = cli(*args)
    assert_clean_run(code, out, err, codes=(0, 1, 3))
    if fmt == "json":
        assert json.loads(out)["exit_code"] == code


@HOSTILE_SETTINGS
@given(names=st.lists(hostile_text_surrogates, min_size=1, max_size=3))
def test_scan_table_of_hostile_paths(tmp_path_factory, names):
    top = tmp_path_factory.mktemp("s")
    paths = []
    for i, n in enumerate(names):
        p = top / f"{i}{_name(n)}"
        if i == 0:
            write_lora(p, seed=i)
        else:
            p.mkdir()  # not an adapter: an error row whose message quotes the path
        paths.append(str(p))
    code, out, err = cli("scan", *paths)
    assert_clean_run(code, out, err, codes=(0, 3))
    assert ("could not be scored" in err) == (code == 3)


@settings(max_examples=20, deadline=None)
@given(names=st.lists(hostile_text_surrogates, min_size=1, max_size=2), base=hostile_text)
def test_ingest_table_of_hostile_paths(tmp_path_factory, names, base):
    top = tmp_path_factory.mktemp("i")
    paths = []
    for i, n in enumerate(names):
        p = top / f"{i}{_name(n)}"
        write_lora(p, seed=i) if i == 0 else p.mkdir()
        paths.append(str(p))
    code, out, err = cli("ingest", *paths, "--base", base, "--db", f"sqlite:///{top / 'i.db'}")
    assert_clean_run(code, out, err, codes=(0, 3), out_allowed="\n\t")
    lines = out.splitlines()  # a header, then the one adapter: the empty folders are skipped, not stored
    assert len(lines) == 2 and all(len(line.split("\t")) == 4 for line in lines)


@HOSTILE_SETTINGS
@given(message=hostile_text_surrogates, hint=st.one_of(st.none(), hostile_text))
def test_error_printer_never_reads_markup(message, hint):
    from hubaudit.cli.main import _fail

    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exc:
        _fail(message, hint, 4)
    assert exc.value.code == 4
    text = err.getvalue()
    assert_terminal_safe(text)
    assert text.startswith("Error: ") and len(text.splitlines()) == (2 if hint else 1)
    first = (message.strip().splitlines() or ["error"])[0]
    if "[/]" in first:
        assert "[/]" in text  # shown literally, never interpreted


def test_cli_sources_print_data_only_through_the_data_console():
    """Rich markup is never enabled and every console is a DataConsole (so str is escaped)."""
    src = Path(__file__).resolve().parents[2] / "hubaudit" / "cli"
    for f in src.glob("*.py"):
        text = f.read_text()
        assert not re.search(r"markup\s*=\s*True", text), f
        if f.name != "_options.py":
            assert not re.search(r"\bConsole\(", text), f


# ---------------------------------------------------------------- real processes: exit codes, no traceback
def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([HUBAUDIT, *args], capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})}, errors="surrogateescape")  # fmt: skip


def test_subprocess_exit_codes(hostile_store, tmp_path):
    url, _, _root = hostile_store
    d = write_lora(tmp_path / "evil\x1b[2J[bold]", seed=1, base=EVIL_DECLARED)
    for args, want in (
        (("check", str(d), "--db", url, "--offline"), 3),  # declared base "evil[/]x...": not calibrated
        (("check", "evil[/]x\x1b[2J", "--db", url, "--offline"), 2),  # neither a path nor a repo id
        (("report", "--base", BASE, "--db", url, "--format", "html", "-o", str(tmp_path / "r.html")), 0),
        (("ingest", str(d), "--base", "b[/]\x1b]0;t\x07", "--db", url), 0),
    ):
        p = run(*args)
        assert p.returncode == want, (args, p.stderr)
        assert "Traceback" not in p.stderr and not controls(p.stderr) and not controls(p.stdout, "\n\t"), p.stderr
    assert (tmp_path / "r.html").stat().st_size > 10_000


class _Unauthorized(BaseHTTPRequestHandler):
    """Every request: 401 with rich markup and an escape sequence in the message the client reports."""

    def _answer(self) -> None:
        body = b'{"error": "Invalid credentials [/] [bold]x"}'
        self.send_response(401)
        self.send_header("X-Error-Message", "Invalid credentials in Authorization header [/] [bold]x \x1b[2J")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_HEAD = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.mark.parametrize("args", [("crawl", "--base", "a/b[/]", "--max-retries", "0"), ("check", "org/name")])
def test_hub_401_with_markup_in_headers_exits_4(tmp_path, args):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        env = {"HF_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}", "HF_TOKEN": "hf_test",
               "HUBAUDIT_HOME": str(tmp_path), "HUBAUDIT_DB_URL": f"sqlite:///{tmp_path / 'x.db'}"}
        if args[0] == "check":  # check only reads: it needs an existing database to reach the Hub
            from hubaudit.store import Store

            Store.open(env["HUBAUDIT_DB_URL"], create=True).close()
        p = run_cli(*args, env=env)
    finally:
        server.shutdown()
    assert p.returncode == 4, p.stderr
    assert "Traceback" not in p.stderr and p.stderr.startswith("Error: ") and not controls(p.stderr)
