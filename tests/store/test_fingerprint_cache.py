"""The packed fingerprint matrix cache (hubaudit/store/_fingerprint_cache.py) and the ranking of
pipeline/similar.py, against a real SQLite store of 1,200 fingerprinted revisions.

The cache must equal what the database holds, follow every write (insert, replacement) and treat a
damaged or hostile cache file as no cache: never unpickle it, never follow a link, never block on a
FIFO, never serve NaN similarities from it.
"""

from __future__ import annotations

import io
import os
import threading
from pathlib import Path

import numpy as np
import pytest

from hubaudit.constants import FINGERPRINT_VERSION
from hubaudit.models import Fingerprint
from hubaudit.pipeline.similar import Query, rank, search_similar
from hubaudit.store import Store
from hubaudit.store._fingerprint_cache import packed_fingerprints
from tests.store.scans import scan as make_scan

BASE, OTHER = "acme/cache-base", "acme/other"
N, DIM = 1200, 32


def unit_rows(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def items(vecs: np.ndarray, start: int = 0) -> list[dict]:
    out = []
    for i, v in enumerate(vecs, start):
        s = make_scan(0.01, sha=f"{i:064x}")
        s.fingerprint = Fingerprint(FINGERPRINT_VERSION, v, 4 + i % 7)
        out.append(dict(repo_id=f"org{i % 13}/a{i}", sha=f"{i:040x}", status="scored", scan=s))
    return out


@pytest.fixture()
def store(tmp_path, migrated_sqlite):
    """SQLite only: the damaged-cache tests (the cache files are the same for any database)."""
    yield from _populated(migrated_sqlite(tmp_path / "hubaudit.db"))


@pytest.fixture()
def any_store(migrated_url):
    """SQLite and PostgreSQL: the cache key and the read are plain SQL on both."""
    yield from _populated(migrated_url)


def _populated(url: str):
    rng = np.random.default_rng(0)
    with Store.open(url, create=True) as st:
        st.record_revisions_bulk(BASE, items(unit_rows(rng, N)))
        st.record_revisions_bulk(OTHER, items(unit_rows(rng, 5), start=N))
        yield st


def assert_same_as_store(packed, st: Store, base: str = BASE) -> None:
    ref = st.fingerprints(base)  # in revision-id order; the packed rows are in storage order
    order = np.argsort(packed.revision_ids, kind="stable")
    assert packed.revision_ids[order].tolist() == ref.revision_ids.tolist()
    assert packed.n_modules[order].tolist() == ref.n_modules.tolist()
    assert packed.matrix.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(packed.matrix)[order], ref.matrix.astype(np.float32))


def cache_files(cache: Path) -> tuple[Path, Path]:
    (m,), (ids,) = sorted(cache.glob("*.f32.npy")), sorted(cache.glob("*.ids.npz"))
    return m, ids


def test_built_then_served_from_the_cache(any_store, tmp_path):
    store = any_store
    cache = tmp_path / "cache"
    first, src1 = packed_fingerprints(store, BASE, cache_dir=cache)
    second, src2 = packed_fingerprints(store, BASE, cache_dir=cache)
    plain, src3 = packed_fingerprints(store, BASE, cache_dir=None)
    assert (src1, src2, src3) == ("built", "cache", "database")
    for p in (first, second, plain):
        assert len(p) == N and p.dim == DIM
        assert_same_as_store(p, store)
    assert isinstance(second.matrix, np.memmap) and not second.matrix.flags.writeable
    small, src = packed_fingerprints(store, OTHER, cache_dir=cache)  # too few rows to be worth a file
    assert src == "database" and len(small) == 5
    assert len(list(cache.iterdir())) == 2


def test_every_write_to_the_base_invalidates_it(any_store, tmp_path):
    store = any_store
    cache = tmp_path / "cache"
    packed_fingerprints(store, BASE, cache_dir=cache)
    store.record_revisions_bulk(BASE, items(unit_rows(np.random.default_rng(1), 1), start=9000))  # an insert
    p, src = packed_fingerprints(store, BASE, cache_dir=cache)
    assert src == "built" and len(p) == N + 1
    assert_same_as_store(p, store)
    assert packed_fingerprints(store, BASE, cache_dir=cache)[1] == "cache"

    store.record_revisions_bulk(OTHER, items(unit_rows(np.random.default_rng(5), 3), start=5000))
    p, src = packed_fingerprints(store, BASE, cache_dir=cache)  # any write to the table: rebuilt, same rows
    assert src == "built" and len(p) == N + 1
    assert_same_as_store(p, store)

    rid = int(p.revision_ids[7])
    new = np.zeros(DIM, dtype=np.float32)
    new[3] = 1.0
    store.save_fingerprints([(rid, Fingerprint(FINGERPRINT_VERSION, new, 99))])  # a replacement: same id, same count
    p, src = packed_fingerprints(store, BASE, cache_dir=cache)
    row = int(np.flatnonzero(p.revision_ids == rid)[0])
    assert src == "built" and p.matrix[row].tolist() == new.tolist() and int(p.n_modules[row]) == 99
    assert_same_as_store(p, store)
    assert len(list(cache.iterdir())) == 2  # the stale files were removed


class _Marker:
    """Unpickling this writes a file: the proof that a cache file was unpickled."""

    path = ""

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "unpickled"))


def _damage(kind: str, matrix: Path, ids: Path, tmp_path: Path) -> None:
    if kind == "truncated":
        matrix.write_bytes(matrix.read_bytes()[: matrix.stat().st_size // 2])
    elif kind == "pickle":
        _Marker.path = str(tmp_path / "marker")
        arr = np.empty(N, dtype=object)
        arr[:] = [_Marker() for _ in range(N)]
        with open(matrix, "wb") as f:
            np.save(f, arr, allow_pickle=True)
    elif kind == "float64":
        np.save(matrix, np.zeros((N, DIM)))
    elif kind == "wrong_shape":
        np.save(matrix, np.zeros((N, DIM + 1), dtype=np.float32))
    elif kind == "foreign_ids":
        with np.load(ids) as z:
            parts = {k: z[k] for k in z.files}
        parts["key"] = np.array("1|1200|1|someone else's")
        np.savez(ids, **parts)
    elif kind == "duplicate_ids":
        with np.load(ids) as z:
            parts = {k: z[k] for k in z.files}
        parts["revision_ids"][1] = parts["revision_ids"][0]  # not one id per row
        np.savez(ids, **parts)
    elif kind == "symlink":
        target = tmp_path / "elsewhere.npy"
        os.replace(matrix, target)
        os.symlink(target, matrix)
    elif kind == "fifo":
        matrix.unlink()
        os.mkfifo(matrix)
    elif kind == "garbage_zip":
        ids.write_bytes(b"PK\x03\x04" + os.urandom(200))
    elif kind == "zip_bomb":
        import zipfile

        with np.load(ids) as z:
            parts = {k: z[k] for k in z.files}
        with zipfile.ZipFile(ids, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for k, v in parts.items():
                buf = io.BytesIO()
                np.save(buf, v if k != "revision_ids" else np.zeros(2_000_000, dtype=np.int64))
                zf.writestr(f"{k}.npy", buf.getvalue())


@pytest.mark.parametrize("kind", ["truncated", "pickle", "float64", "wrong_shape", "foreign_ids", "duplicate_ids",
                                  "symlink", "fifo", "garbage_zip", "zip_bomb"])  # fmt: skip
def test_a_damaged_or_hostile_cache_is_rebuilt_never_trusted(store, tmp_path, kind):
    cache = tmp_path / "cache"
    packed_fingerprints(store, BASE, cache_dir=cache)
    matrix, ids = cache_files(cache)
    _damage(kind, matrix, ids, tmp_path)
    got: list = []
    worker = threading.Thread(target=lambda: got.append(packed_fingerprints(store, BASE, cache_dir=cache)), daemon=True)
    worker.start()
    worker.join(60)
    assert got, "the cache read blocked"
    p, src = got[0]
    assert src == "built"
    assert_same_as_store(p, store)
    assert not (tmp_path / "marker").exists()
    assert packed_fingerprints(store, BASE, cache_dir=cache)[1] == "cache"


def test_nan_in_a_well_formed_cache_is_rebuilt(store, tmp_path):
    cache = tmp_path / "cache"
    packed_fingerprints(store, BASE, cache_dir=cache)
    matrix, _ = cache_files(cache)
    m = np.load(matrix, mmap_mode="r+")
    m[:] = np.nan
    m.flush()
    del m
    ref = store.fingerprints(BASE)
    q = ref.fingerprint(10)
    query = Query("t", ref.repo_ids[10], ref.shas[10], BASE, "store", q, exclude=frozenset({int(ref.revision_ids[10])}))
    result = search_similar(store, query, top=5, min_similarity=-1.0, cache_dir=cache)
    assert result.loaded_from == "built" and len(result.neighbours) == 5
    expected = ref.matrix.astype(np.float32) @ q.vec
    expected[10] = -np.inf
    best = np.argsort(-expected, kind="stable")[:5]
    assert [n.revision_id for n in result.neighbours] == ref.revision_ids[best].tolist()
    again = search_similar(store, query, top=5, min_similarity=-1.0, cache_dir=cache)
    assert again.loaded_from == "cache" and [n.revision_id for n in again.neighbours] == ref.revision_ids[best].tolist()


def test_an_unwritable_cache_directory_only_costs_speed(store, tmp_path):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    p, src = packed_fingerprints(store, BASE, cache_dir=not_a_dir / "cache")
    assert src == "database"
    assert_same_as_store(p, store)


@pytest.mark.parametrize("seed", range(5))
def test_rank_is_the_top_of_a_full_sort(seed):
    rng = np.random.default_rng(seed)
    scores = rng.uniform(-1, 1, 5000).astype(np.float32)
    scores[rng.integers(0, 5000, 20)] = np.nan
    exclude = rng.choice(5000, 50, replace=False)
    for top, floor in ((1, -1.0), (10, 0.5), (4000, 0.0), (10, 0.9999)):
        got, matched = rank(scores, top=top, min_similarity=floor, exclude=exclude)
        ok = np.flatnonzero(scores >= floor)
        ok = ok[~np.isin(ok, exclude)]
        want = ok[np.lexsort((ok, -scores[ok]))][:top]
        assert got.tolist() == want.tolist() and matched == ok.size


def test_warm_cache_after_a_write_makes_the_next_search_a_cache_hit(store, tmp_path):
    from hubaudit.pipeline.similar import warm_cache

    cache = tmp_path / "warm"
    rng = np.random.default_rng(7)
    store.record_revisions_bulk(BASE, items(unit_rows(rng, 3), start=5000))  # a crawl's write
    warm_cache(store, [BASE, BASE, "nobody/unknown-base"], cache)  # duplicates and unknown bases are harmless
    packed, where = packed_fingerprints(store, BASE, cache_dir=cache)
    assert where == "cache" and len(packed) == N + 3
    store.record_revisions_bulk(BASE, items(unit_rows(rng, 1), start=6000))
    assert packed_fingerprints(store, BASE, cache_dir=cache)[1] == "built"  # a write still invalidates it


def test_warm_cache_never_fails_the_command_that_wrote(store, tmp_path):
    from hubaudit.pipeline.similar import warm_cache

    blocked = tmp_path / "file-not-dir"
    blocked.write_text("x")
    warm_cache(store, [BASE], blocked / "cache")  # cannot be created: the search reads the database later
    assert packed_fingerprints(store, BASE, cache_dir=None)[1] == "database"
