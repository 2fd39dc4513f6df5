"""Data loading for PSIM: formats, and one-line errors for every bad input a user can give."""

from __future__ import annotations

import json

import pytest

from hubaudit.errors import UsageError
from hubaudit.psim import data


def _w(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_jsonl_parquet_read_the_same_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [{"text": "a, with comma", "label": 0}, {"text": "b \"quoted\"", "label": 1}, {"text": "ünïcode", "label": 1}]
    csv_p = tmp_path / "d.csv"
    data.write_table(csv_p, ["text", "label"], rows)
    jl = _w(tmp_path / "d.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    pq_p = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist(rows), pq_p)
    for p in (csv_p, jl, pq_p):
        t = data.read_table(p)
        assert data.texts_of(t, "text") == [r["text"] for r in rows]
        labels, k = data.labels_of(t, "label")
        assert (labels, k) == ([0, 1, 1], 2)


def test_label_names_map_to_sorted_indices(tmp_path):
    p = _w(tmp_path / "d.jsonl", '{"t": "x", "y": "pos"}\n{"t": "y", "y": "neg"}\n{"t": "z", "y": "pos"}\n')
    assert data.labels_of(data.read_table(p), "y") == ([1, 0, 1], 2)


@pytest.mark.parametrize(
    ("name", "content", "call", "needle"),
    [
        ("missing.csv", "text,label\na,0\nb,1\n", lambda t: data.texts_of(t, "sentence"), "no column 'sentence'"),
        ("empty.csv", "", None, "file is empty"),
        ("header_only.csv", "text,label\n", None, "no data rows"),
        ("blank.jsonl", "\n\n", None, "no data rows"),
        ("bad.jsonl", '{"text": "a", "label": 0}\n{not json\n', None, "line 2 is not valid JSON"),
        ("single.csv", "text,label\na,1\nb,1\n", lambda t: data.labels_of(t, "label"), "single class"),
        ("neg.csv", "text,label\na,-1\nb,1\n", lambda t: data.labels_of(t, "label"), "out of range"),
        ("range.csv", "text,label\na,0\nb,2\n", lambda t: data.labels_of(t, "label", num_labels=2), "label 2 in column 'label' is out of range (expected 0..1)"),
        ("nolabel.csv", "text,label\na,0\nb,\n", lambda t: data.labels_of(t, "label"), "row 2 has no value"),
        ("nulltext.jsonl", '{"text": null, "label": 0}\n', lambda t: data.texts_of(t, "text"), "row 1 has no value"),
        ("data.txt", "x", None, "unknown data format"),
    ],
)
def test_bad_inputs_raise_one_line_usage_errors(tmp_path, name, content, call, needle):
    p = _w(tmp_path / name, content)
    with pytest.raises(UsageError) as ei:
        t = data.read_table(p)
        call(t)
    msg = str(ei.value)
    assert needle in msg and "\n" not in msg and str(p) in msg


def test_non_utf8_is_rejected_with_the_byte_offset(tmp_path):
    p = tmp_path / "latin1.csv"
    p.write_bytes("text,label\ncaf\xe9,0\n".encode("latin-1"))
    with pytest.raises(data.PsimDataError, match=r"not valid UTF-8 \(byte 14\)"):
        data.read_table(p)


def test_corrupt_parquet_is_a_usage_error(tmp_path):
    p = tmp_path / "x.parquet"
    p.write_bytes(b"PAR1 not really")
    with pytest.raises(data.PsimDataError, match="cannot read Parquet"):
        data.read_table(p)


def test_write_table_keeps_format_and_columns(tmp_path):
    rows = [{"text": "a", "label": 0, "extra": "e"}]
    for suffix in (".csv", ".jsonl", ".parquet"):
        p = tmp_path / f"out{suffix}"
        data.write_table(p, ["text", "label", "extra"], rows)
        t = data.read_table(p)
        assert t.columns == ["text", "label", "extra"] and data.texts_of(t, "text") == ["a"]
