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

The database side (the rows and the key they were read under) is LineageRepository's
(lineage.py); this module owns only the files. ``repo_revisions`` is kept here for its callers: the
stored revisions (and fingerprints) of one repo id, across bases.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np

from hubaudit.constants import FINGERPRINT_VERSION
from hubaudit.store.lineage import StoredRevision

if TYPE_CHECKING:
    from hubaudit.store.store import Store

__all__ = ["CACHE_FORMAT", "PackedFingerprints", "StoredRevision", "packed_fingerprints", "repo_revisions"]

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


def repo_revisions(store: Store, repo_id: str, version: str = FINGERPRINT_VERSION) -> list[StoredRevision]:
    """Every stored revision of ``repo_id`` under every base, oldest first."""
    return store.lineage.repo_revisions(repo_id, version)


def packed_fingerprints(
    store: Store, base: str, version: str = FINGERPRINT_VERSION, *, cache_dir: Path | None = None, refresh: bool = False
) -> tuple[PackedFingerprints, str]:
    """The fingerprints of ``base`` and where they came from: ``"cache"`` (a valid cache file),
    ``"built"`` (read from the database and cached) or ``"database"`` (no usable cache directory).

    ``cache_dir`` None reads the database every time. A cache directory that cannot be written
    only costs the speed-up. ``refresh``: rebuild the cache even if it looks valid (a caller found
    values in it no fingerprint has).
    """
    state = store.lineage.fingerprint_state(base, version)
    if state is None:
        return _empty(version), "database"
    if cache_dir is not None and state.count and not refresh:
        key = _key(state.key)
        packed = _load(_cache_paths(store, cache_dir, base, version, key), key, version)
        if packed is not None:
            return packed, "cache"
    # A rebuild is keyed by the state read in the same transaction as its rows, never by the one above.
    rows = store.lineage.packed_fingerprint_rows(base, version)
    if rows is None:
        return _empty(version), "database"
    key = _key(rows.state.key)
    if cache_dir is not None and rows.revision_ids.size >= _MIN_CACHED_ROWS:
        packed = _save(_cache_paths(store, cache_dir, base, version, key), key, version, rows.revision_ids,
                       rows.n_modules, rows.matrix)  # fmt: skip
        if packed is not None:
            return packed, "built"
    f16 = rows.matrix
    return PackedFingerprints(version, f16.shape[1], rows.revision_ids, rows.n_modules, f16.astype(_F32)), "database"


def _key(state_key: str) -> str:
    return f"{CACHE_FORMAT}|{state_key}"


def _empty(version: str) -> PackedFingerprints:
    return PackedFingerprints(version, 0, np.zeros(0, np.int64), np.zeros(0, np.int32), np.zeros((0, 0), _F32))


# -- the cache files ---------------------------------------------------------------------------------


def _db_identity(store: Store) -> str:
    """The database a cache belongs to: its URL (no password) and, for a SQLite file, the file itself."""
    ident = store.url
    database = store.engine.url.database if store.engine.dialect.name == "sqlite" else None
    if database and database != ":memory:" and not database.startswith("file:"):
        with contextlib.suppress(OSError):
            p = Path(database).expanduser().resolve()
            st = p.stat()
            ident += f"|{p}|{st.st_dev}|{st.st_ino}"
    return ident


def _cache_paths(store: Store, cache_dir: Path, base: str, version: str, key: str) -> tuple[Path, Path, str]:
    """(matrix file, ids file, the prefix every cache file of this database, base and version shares)."""
    scope = hashlib.sha256(
        f"{_db_identity(store)}\0{base}\0{version}".encode("utf-8", "surrogateescape")
    ).hexdigest()[:32]
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


def _write_atomic(directory: Path, target: Path, write: Callable[[BinaryIO], object]) -> None:
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=target.suffix)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
