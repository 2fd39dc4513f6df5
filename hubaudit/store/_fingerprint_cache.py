"""The stored fingerprints of one base as a packed float16 matrix, cached on disk between reads.

Reading 100,000 fingerprints back from SQLite costs most of a second (one row object and one blob
per revision); a similarity search over them costs a few hundredths of that, if the matrix is
float32: numpy has no float16 BLAS, and widening 100,000 x 512 float16 values costs more than the
matrix-vector product itself. So the first read of a base writes its matrix as float32 (``.npy``,
memory-mapped afterwards: 4 x dim bytes per revision, twice the database's float16 blobs) and the
row ids (``.npz``) to a cache directory, and later reads load those as long as the database still holds
exactly the same fingerprints: the cache is keyed by the count, the largest id and the latest
``created_at`` of the fingerprint rows of its version (any insert, delete or replacement changes one
of them), read in the same transaction as a rebuild, plus the database's identity. A cache file is
data only: loaded with ``allow_pickle=False``, its dtype, shape, ids and key are checked, and
anything unexpected (a truncated, foreign or hostile file) is ignored and rebuilt, never trusted.

Also the two lookups a similarity search needs that are not a whole base: the stored revisions
(and fingerprints) of one repo id, across bases.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import and_, func, select

from hubaudit.constants import FINGERPRINT_VERSION
from hubaudit.errors import StoreError
from hubaudit.models import Fingerprint
from hubaudit.store.schema import Adapter, AdapterFingerprint, BaseModel, Revision

CACHE_FORMAT = "1"
_F16 = np.dtype("<f2")
_F32 = np.dtype("<f4")
_MIN_CACHED_ROWS = 1000  # below this SQLite is fast enough; no file is written
_WIDEN_ROWS = 16384


@dataclass(frozen=True)
class PackedFingerprints:
    """The fingerprints of one ``version`` of every fingerprinted revision of a base.

    ``matrix`` is float32 (n, dim), unit rows (stored as float16), possibly a read-only memory map;
    ``revision_ids`` (int64, distinct) and ``n_modules`` (int32) are parallel to its rows, which are in
    the order the fingerprints were stored.
    """

    version: str
    dim: int
    revision_ids: np.ndarray
    n_modules: np.ndarray
    matrix: np.ndarray

    def __len__(self) -> int:
        return int(self.revision_ids.shape[0])


@dataclass(frozen=True)
class StoredRevision:
    """One stored revision of a repo, with its fingerprint of the asked version if it has one."""

    base: str
    revision_id: int
    repo_id: str
    sha: str
    status: str
    reason: str | None
    fingerprint: Fingerprint | None


def repo_revisions(store: Any, repo_id: str, version: str = FINGERPRINT_VERSION) -> list[StoredRevision]:
    """Every stored revision of ``repo_id`` under every base, oldest first."""
    with store._read() as conn:
        q = (
            select(BaseModel.name, Revision.id, Revision.repo_id, Revision.sha, Revision.status, Revision.reason,
                   AdapterFingerprint.n_modules, AdapterFingerprint.vec)
            .join(Adapter, Adapter.id == Revision.adapter_id)
            .join(BaseModel, BaseModel.id == Adapter.base_id)
            .outerjoin(AdapterFingerprint, and_(AdapterFingerprint.revision_id == Revision.id,
                                                AdapterFingerprint.version == version))
            .where(Revision.repo_id == repo_id)
            .order_by(Revision.id)
        )  # fmt: skip
        rows = conn.execute(q).all()
    return [StoredRevision(r.name, int(r.id), r.repo_id, r.sha, r.status, r.reason,
                           Fingerprint.from_bytes(version, r.vec, int(r.n_modules)) if r.vec is not None else None)
            for r in rows]  # fmt: skip


def packed_fingerprints(
    store: Any, base: str, version: str = FINGERPRINT_VERSION, *, cache_dir: Path | None = None, refresh: bool = False
) -> tuple[PackedFingerprints, str]:
    """The fingerprints of ``base`` and where they came from: ``"cache"`` (a valid cache file),
    ``"built"`` (read from the database and cached) or ``"database"`` (no usable cache directory).

    ``cache_dir`` None reads the database every time. A cache directory that cannot be written
    only costs the speed-up. ``refresh``: rebuild the cache even if it looks valid (a caller found
    values in it no fingerprint has).
    """
    with store._read() as conn:
        bid = store._base_id(conn, base, create=False)
        if bid is None:
            return _empty(version), "database"
        # The whole table's rows of this version, not the base's: one index range (no join over the
        # base's revisions), and a write to any base invalidates every base's cache.
        count, max_id, max_created = conn.execute(
            select(func.count(), func.max(AdapterFingerprint.id), func.max(AdapterFingerprint.created_at))
            .where(AdapterFingerprint.version == version)
        ).one()
        key = f"{CACHE_FORMAT}|{int(count)}|{max_id}|{max_created}"
        paths = _cache_paths(store, cache_dir, base, version, key) if cache_dir is not None else None
        if paths is not None and count and not refresh:
            packed = _load(paths, key, version)
            if packed is not None:
                return packed, "cache"
        rids, nmods, f16 = _read_db(conn, bid, version)
    if paths is not None and rids.size >= _MIN_CACHED_ROWS:
        packed = _save(paths, key, version, rids, nmods, f16)
        if packed is not None:
            return packed, "built"
    return PackedFingerprints(version, f16.shape[1], rids, nmods, f16.astype(_F32)), "database"


def _empty(version: str) -> PackedFingerprints:
    return PackedFingerprints(version, 0, np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros((0, 0), _F32))


def _read_db(conn: Any, bid: int, version: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(revision ids, module counts, float16 matrix) of the base's fingerprints, in the order they were
    stored: the order of the version index, so SQLite need not sort 100,000 blobs."""
    q = (
        select(AdapterFingerprint.revision_id, AdapterFingerprint.n_modules, AdapterFingerprint.dim, AdapterFingerprint.vec)
        .join(Revision, Revision.id == AdapterFingerprint.revision_id)
        .join(Adapter, Adapter.id == Revision.adapter_id)
        .where(Adapter.base_id == bid, AdapterFingerprint.version == version)
        .order_by(AdapterFingerprint.id)
    )
    rows = conn.execute(q).all()
    if not rows:
        return np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros((0, 0), _F16)
    rids, nmods, dims, vecs = zip(*rows)
    del rows
    if len(set(dims)) > 1:
        raise StoreError(f"fingerprints of version {version} with several dimensions {sorted(set(dims))}")
    dim = int(dims[0])
    if {len(v) for v in vecs} != {dim * _F16.itemsize}:
        raise StoreError(f"a stored fingerprint of version {version} does not hold {dim} float16 values")
    matrix = np.frombuffer(b"".join(vecs), dtype=_F16).reshape(len(vecs), dim)
    return np.array(rids, dtype=np.int64), np.array(nmods, dtype=np.int32), matrix


# -- the cache files ---------------------------------------------------------------------------------


def _db_identity(store: Any) -> str:
    """The database a cache belongs to: its URL (no password) and, for a SQLite file, the file itself."""
    ident = store.url
    database = store.engine.url.database if store.engine.dialect.name == "sqlite" else None
    if database and database != ":memory:" and not database.startswith("file:"):
        with contextlib.suppress(OSError):
            p = Path(database).expanduser().resolve()
            st = p.stat()
            ident += f"|{p}|{st.st_dev}|{st.st_ino}"
    return ident


def _cache_paths(store: Any, cache_dir: Path, base: str, version: str, key: str) -> tuple[Path, Path, str]:
    """(matrix file, ids file, the prefix every cache file of this database, base and version shares)."""
    scope = hashlib.sha256(f"{_db_identity(store)}\0{base}\0{version}".encode("utf-8", "surrogateescape")).hexdigest()[:32]
    stem = f"{scope}-{hashlib.sha256(key.encode()).hexdigest()[:16]}"
    return cache_dir / f"{stem}.f32.npy", cache_dir / f"{stem}.ids.npz", scope


def _regular_file(path: Path) -> bool:
    # Only a plain file is opened: a FIFO would block, a symlink could point anywhere.
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _load(paths: tuple[Path, Path, str], key: str, version: str) -> PackedFingerprints | None:
    """The cached matrix if both files exist and are exactly what ``key`` describes; else None."""
    matrix_path, ids_path, _ = paths
    if not (_regular_file(matrix_path) and _regular_file(ids_path)):
        return None
    try:
        with np.load(ids_path, allow_pickle=False) as z:
            if sorted(z.files) != ["dim", "key", "n_modules", "revision_ids"]:
                return None
            # np.savez stores its members uncompressed: one that would inflate beyond the file is a zip bomb
            if max(z.zip.getinfo(f"{name}.npy").file_size for name in z.files) > ids_path.stat().st_size:
                return None
            stored_key, dim = z["key"], z["dim"]
            rids, nmods = z["revision_ids"], z["n_modules"]
        if stored_key.dtype.kind != "U" or stored_key.shape != () or str(stored_key) != key:
            return None
        if dim.dtype != np.int64 or dim.shape != () or int(dim) <= 0:
            return None
        count = rids.shape[0] if rids.ndim == 1 else -1
        if rids.dtype != np.int64 or nmods.dtype != np.int32 or count <= 0 or nmods.shape != (count,):
            return None
        if np.unique(rids).size != count:
            return None
        matrix = np.load(matrix_path, mmap_mode="r", allow_pickle=False)
        if not isinstance(matrix, np.ndarray) or matrix.dtype != _F32 or matrix.shape != (count, int(dim)):
            return None
    except Exception:  # noqa: BLE001 - OSError, ValueError, BadZipFile...: a broken cache file is no cache
        return None
    return PackedFingerprints(version, int(dim), rids, nmods, matrix)


def _save(paths: tuple[Path, Path, str], key: str, version: str, rids: np.ndarray, nmods: np.ndarray,
          f16: np.ndarray) -> PackedFingerprints | None:  # fmt: skip
    """Write both cache files (each atomically, under a name that carries ``key``), then remove the
    older files of the same scope; the matrix comes back memory-mapped. None when the directory
    cannot be written."""
    matrix_path, ids_path, scope = paths
    directory = matrix_path.parent
    n, dim = f16.shape
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".npy")
        os.close(fd)
        try:
            # Widened straight into the file's pages, a block at a time: no float32 copy in memory.
            matrix = np.lib.format.open_memmap(tmp, mode="w+", dtype=_F32, shape=(n, dim))
            for lo in range(0, n, _WIDEN_ROWS):
                matrix[lo : lo + _WIDEN_ROWS] = f16[lo : lo + _WIDEN_ROWS]
            matrix.flush()
            matrix.flags.writeable = False
            os.replace(tmp, matrix_path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        _write_atomic(directory, ids_path, lambda f: np.savez(f, key=np.array(key), dim=np.array(dim, dtype=np.int64),
                                                              revision_ids=rids, n_modules=nmods))  # fmt: skip
    except OSError:
        return None
    for old in directory.glob(f"{scope}-*"):
        if old not in (matrix_path, ids_path):
            with contextlib.suppress(OSError):
                old.unlink()
    return PackedFingerprints(version, dim, rids, nmods, matrix)


def _write_atomic(directory: Path, target: Path, write: Any) -> None:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=target.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
