"""Overlapping processes on one SQLite file (cron and an interactive run): WAL + busy_timeout +
BEGIN IMMEDIATE must give no 'database is locked' failure and no lost rows."""

from __future__ import annotations

import multiprocessing as mp

from hubaudit.constants import FEATURESET_VERSION
from hubaudit.store import Store

N_WRITES = 300
BASE = "org/base"


def _writer(url: str, tag: str, n: int, queue) -> None:  # type: ignore[no-untyped-def]
    try:
        from tests.store.scans import scan

        with Store.open(url) as store:
            for i in range(n):  # one commit per item, as crawl does
                store.record_revision(base=BASE, repo_id=f"{tag}/a{i}", sha=f"s{i}", status="scored", scan=scan(0.01 + i * 1e-5))
                if i % 50 == 0:
                    store.upsert_adapter(BASE, f"{tag}/a{i}", meta={"downloads": i})
        queue.put((tag, "ok", n))
    except Exception as exc:  # noqa: BLE001 - report to the parent, which asserts
        queue.put((tag, "fail", repr(exc)))


def _reader(url: str, stop, queue) -> None:  # type: ignore[no-untyped-def]
    try:
        seen, reads = 0, 0
        with Store.open(url) as store:
            while not stop.is_set() or reads < 5:
                n = len(store.population(BASE, FEATURESET_VERSION))
                assert n >= seen, f"row count went backwards: {seen} -> {n}"
                seen = n
                store.audit_rows(BASE)
                reads += 1
        queue.put(("reader", "ok", reads))
    except Exception as exc:  # noqa: BLE001
        queue.put(("reader", "fail", repr(exc)))


def test_writers_and_reader_on_one_sqlite_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    Store.open(url, create=True).close()
    ctx = mp.get_context("spawn")
    queue, stop = ctx.Queue(), ctx.Event()
    writers = [ctx.Process(target=_writer, args=(url, tag, N_WRITES, queue)) for tag in ("cron", "interactive")]
    reader = ctx.Process(target=_reader, args=(url, stop, queue))
    reader.start()
    for w in writers:
        w.start()
    for w in writers:
        w.join(timeout=300)
    stop.set()
    reader.join(timeout=120)
    results = sorted(queue.get(timeout=10) for _ in range(3))
    assert [r[1] for r in results] == ["ok"] * 3, results
    assert dict((r[0], r[2]) for r in results)["reader"] >= 5
    with Store.open(url) as store:
        pop = store.population(BASE, FEATURESET_VERSION)
        assert len(pop) == 2 * N_WRITES
        assert len({p.repo_id for p in pop}) == 2 * N_WRITES
        assert store.adapter_meta(BASE, "cron/a250")["downloads"] == 250
