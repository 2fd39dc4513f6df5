"""The shared vocabulary (hubaudit/vocab.py): the words are the stored and printed strings, unchanged."""

from __future__ import annotations

import csv
import io
import json
import sqlite3

import pytest

from hubaudit import vocab
from hubaudit.textsafe import csv_cell, json_dumps
from hubaudit.vocab import (
    FINAL_REVISION_STATUSES,
    ProbeJobStatus,
    ProbeStatus,
    RevisionStatus,
    ScanStatus,
    StratumStatus,
    Verdict,
    revision_status,
)

# The strings stored in databases, written in JSON/CSV outputs and compared by every consumer:
# renaming one is a schema change, not a refactoring.
WORDS = {
    ScanStatus: {"ok", "error", "unsupported"},
    RevisionStatus: {"scored", "unsupported", "error", "skipped", "retry"},
    ProbeJobStatus: {"queued", "running", "done", "failed"},
    ProbeStatus: {"ok", "error"},
    StratumStatus: {"calibrated", "pooled", "not_calibrated"},
    Verdict: {"pass", "pass_low_confidence", "flagged", "suppressed", "clean", "not_calibrated", "not_audited",
              "not_judged"},
}


@pytest.mark.parametrize("enum", list(WORDS), ids=lambda e: e.__name__)
def test_the_words_are_the_stored_strings(enum):
    assert {m.value for m in enum} == WORDS[enum]


@pytest.mark.parametrize("member", [m for e in WORDS for m in e], ids=repr)
def test_a_member_is_its_string_in_every_sink(member):
    word = member.value
    assert member == word and hash(member) == hash(word) and isinstance(member, str)
    assert str(member) == f"{member}" == format(member) == word
    assert json.dumps({member: [member]}) == json_dumps({word: [word]}) == f'{{"{word}": ["{word}"]}}'
    assert json.dumps(member, indent=2) == f'"{word}"'
    assert csv_cell(member) == word
    buf = io.StringIO()
    csv.writer(buf).writerow([member])
    assert buf.getvalue() == f"{word}\r\n"
    assert {word: 1}[member] == 1 and {member: 1}[word] == 1


def test_sqlite_stores_the_value_and_reads_back_an_equal_string():
    con = sqlite3.connect(":memory:")
    con.execute("CREATE TABLE t (status TEXT)")
    con.executemany("INSERT INTO t VALUES (?)", [(s,) for s in RevisionStatus])
    rows = con.execute("SELECT status, typeof(status) FROM t").fetchall()
    assert rows == [(s.value, "text") for s in RevisionStatus]
    assert con.execute("SELECT count(*) FROM t WHERE status = ?", (RevisionStatus.SCORED,)).fetchone() == (1,)


def test_postgres_driver_sends_the_value_not_the_member_name():
    psycopg = pytest.importorskip("psycopg")
    from psycopg.adapt import PyFormat

    for member in (RevisionStatus.SCORED, ProbeJobStatus.QUEUED, Verdict.NOT_JUDGED):
        dumper = psycopg.adapters.get_dumper(type(member), PyFormat.TEXT)(type(member))
        assert bytes(dumper.dump(member)) == member.value.encode()


def test_final_statuses_are_all_but_retry():
    assert set(RevisionStatus) - {"retry"} == FINAL_REVISION_STATUSES


def test_scan_outcome_maps_to_the_stored_status():
    assert revision_status(ScanStatus.OK) is RevisionStatus.SCORED
    assert revision_status("ok") is RevisionStatus.SCORED
    assert revision_status(ScanStatus.ERROR) is RevisionStatus.ERROR
    assert revision_status(ScanStatus.UNSUPPORTED) is RevisionStatus.UNSUPPORTED
    with pytest.raises(ValueError):
        revision_status("nonsense")


def test_verdict_subsets_are_verdicts():
    assert set(vocab.CHECK_VERDICTS) <= set(Verdict) and set(vocab.SCAN_VERDICTS) <= set(Verdict)


def test_the_store_and_the_check_gate_use_the_vocabulary():
    from hubaudit.pipeline.check import EXIT_CODES
    from hubaudit.store import FINAL_STATUSES, REVISION_STATUSES

    assert set(RevisionStatus) == REVISION_STATUSES and FINAL_STATUSES == FINAL_REVISION_STATUSES
    assert set(EXIT_CODES) == set(vocab.CHECK_VERDICTS)


def test_scanner_outcomes_are_members_and_serialise_as_before(tmp_path):
    from hubaudit.stats import scan_path

    (tmp_path / "adapter_config.json").write_text('{"peft_type": "IA3"}')
    (tmp_path / "adapter_model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    unsupported = scan_path(tmp_path)
    missing = scan_path(tmp_path / "nope")
    assert unsupported.status is ScanStatus.UNSUPPORTED and missing.status is ScanStatus.ERROR
    assert json.loads(json_dumps(unsupported.to_dict()))["status"] == "unsupported"
    assert json.loads(json.dumps(missing.to_dict()))["status"] == "error"
