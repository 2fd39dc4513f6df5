"""sha256 of a weights file computed while the scan reads it (``content_sha256``).

sha256 is the slowest part of a scan on a warm page cache (~1.9 GB/s with SHA-NI, against
~25 GB/s to copy the cached bytes and ~45 GFLOP/s for the float64 Grams; benchmarks/README.md),
and one hash cannot be split across cores. So for any file worth a thread it runs beside the
Gram work from the first byte, and the scan waits for it only at the very end, after the
features are computed (``FileDigest.finish``).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field

from hubaudit.stats._reject import Rejected
from hubaudit.stats.safetensors_header import Header

# Below this a file is hashed inline as it is read: starting a thread (~0.1 ms) costs more than
# it overlaps (4 MiB hash in ~2 ms). Adapters of a few MB to a few hundred MB are common.
BACKGROUND_HASH_BYTES = 4 << 20


class InlineHash:
    """sha256 of the bytes in the order the scan reads them (small files: no thread)."""

    def __init__(self, first: bytes) -> None:
        self._h = hashlib.sha256(first)

    def update(self, buf: bytes | bytearray | memoryview) -> None:
        self._h.update(buf)

    def close(self) -> str:
        return self._h.hexdigest()

    def abort(self) -> None:
        pass


class BackgroundHash:
    """sha256 of the whole file in a second thread reading the same descriptor with pread.

    pread and hashlib (for buffers over 2 KiB) release the GIL, so hashing overlaps the Gram work
    on a second core; the two readers share no queue or lock. Measured: hashing straight from an
    mmap of the file costs the same CPU as pread into a reused buffer (the copy of cached pages is
    ~1 % of the hash), so the file is simply read twice. 8 MiB chunks: ~9 GIL hand-offs for a 74 MB
    file, so the thread rarely waits out the 5 ms switch interval behind pure-Python work.
    posix_fadvise (SEQUENTIAL, or WILLNEED for the whole file or a window ahead) was measured on a
    cold cache and made scans slower, not faster, so the kernel's default read-ahead is used.
    The descriptor must stay open until ``close``/``abort`` returns.
    """

    CHUNK = 8 << 20

    def __init__(self, fd: int, size: int) -> None:
        self._fd, self._size = fd, size
        self._h = hashlib.sha256()
        self._failed: str | None = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, name="hubaudit-sha256", daemon=True)
        self._t.start()

    def _run(self) -> None:
        view = memoryview(bytearray(self.CHUNK))
        off = 0
        try:
            while off < self._size and not self._stop.is_set():
                n = os.preadv(self._fd, [view[: min(self.CHUNK, self._size - off)]], off)
                if n <= 0:
                    self._failed = "file shrank while it was being read"
                    return
                self._h.update(view[:n])
                off += n
        except OSError as exc:  # never a hash of a prefix: the scan is rejected with the reason
            self._failed = f"cannot read the adapter: {exc.strerror or exc}"

    def update(self, buf: bytes | bytearray | memoryview) -> None:
        pass  # the thread reads the file itself

    def close(self) -> str:
        self._t.join()
        if self._failed:
            raise Rejected(self._failed)
        return self._h.hexdigest()

    def abort(self) -> None:
        self._stop.set()
        self._t.join()


class NoHash:
    """``want_sha256=False``."""

    def update(self, buf: bytes | bytearray | memoryview) -> None:
        pass

    def close(self) -> None:
        return None

    def abort(self) -> None:
        pass


Hasher = InlineHash | BackgroundHash | NoHash


@dataclass
class FileDigest:
    """The weights file's sha256 and size, complete once ``finish`` returns.

    ``want_sha256=False`` skips hashing (for callers that verified the file's hash already,
    e.g. against the Hub's LFS metadata): sha256 costs ~13× reading a cached file. The caller
    calls ``finish`` after its own work (the hash thread overlaps it) and ``abort`` in a
    ``finally`` before closing the file, so no thread outlives the descriptor it reads.
    """

    want_sha256: bool = True
    sha256: str | None = None
    file_bytes: int | None = None
    header: Header | None = None
    hasher: Hasher = field(default_factory=NoHash, repr=False)
    complete: bool = False  # every byte was read (set by the reader)

    def finish(self) -> None:
        """Wait for the hash and fill ``sha256`` (only after the reader saw the whole file)."""
        if not self.complete:
            raise RuntimeError("FileDigest.finish before the whole file was read")
        self.sha256 = self.hasher.close()

    def abort(self) -> None:
        """Stop a running hash and wait for its thread (idempotent; no-op after ``finish``)."""
        self.hasher.abort()
