"""Verified download throughput of one large adapter file from the loopback Hub.

    .venv/bin/python benchmarks/bench_download.py [--mb 256] [--repeat 3]

Measures, in one run on one machine, the same file fetched from the same loopback server by:
  * hubaudit's own bounded download (``fetch.download_verified``: total deadline on the socket,
    stops at the promised size, sha256 + git-blob sha1 while streaming, verified before it is kept);
  * ``huggingface_hub.hf_hub_download`` (HEAD + GET into its ETag-named blob; no sha256 check),
    alone and followed by the sha256 pass a verified fetch needs (the route hubaudit took before);
  * the floor: a plain streaming GET through the same client that hashes nothing and writes nothing.
Prints MB/s of each and the ratios (own / hf_hub_download, own / floor). Best of --repeat runs.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hubaudit.demo.fakehub import FakeHub
from hubaudit.fetch import Wanted, download_verified
from hubaudit.httpclient import HubConfig, hub_client

REPO = "bench/big-adapter"
NAME = "adapter_model.safetensors"


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=256, help="file size, MiB")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    size = args.mb << 20
    # Incompressible bytes: the server sends them as they are.
    data = hashlib.shake_256(b"hubaudit bench").digest(size)
    sha256 = hashlib.sha256(data).hexdigest()
    with FakeHub() as hub, hub_client(30.0), tempfile.TemporaryDirectory() as tmp:
        repo = hub.add_repo(REPO, {NAME: data, "README.md": b"bench"})
        sha = repo.head
        cfg = HubConfig(endpoint=hub.url)
        url = f"{hub.url}/{REPO}/resolve/{sha}/{NAME}"

        def own() -> None:
            cache = Path(tmp, "own")
            got = download_verified(cfg, REPO, sha, [Wanted(NAME, size, sha256=sha256)], cache)
            assert got.ok, got.message
            shutil.rmtree(cache)

        def hf(verify: bool) -> None:
            from huggingface_hub import hf_hub_download

            from hubaudit.fetch.download import file_hashes

            cache = Path(tmp, "hf")
            path = hf_hub_download(REPO, NAME, revision=sha, cache_dir=str(cache), endpoint=hub.url, token=False)
            if verify:  # what a verified fetch through the library costs: a second pass to hash
                assert file_hashes(path)[0] == sha256
            shutil.rmtree(cache)

        def floor() -> None:
            from huggingface_hub.utils import get_session

            n = 0
            with get_session().stream("GET", url, follow_redirects=True) as resp:
                for chunk in resp.iter_raw(1 << 20):
                    n += len(chunk)
            assert n == size

        contenders = (("floor", floor), ("own", own), ("hf_hub_download", lambda: hf(False)),
                      ("hf + sha256 pass", lambda: hf(True)))
        results = {name: _best(fn, args.repeat) for name, fn in contenders}
    mbps = {k: args.mb / v for k, v in results.items()}
    print(f"{args.mb} MiB from the loopback Hub, best of {args.repeat}:")
    for k, v in results.items():
        print(f"  {k:16s} {v:6.2f} s  {mbps[k]:7.1f} MiB/s")
    print(f"own vs hf_hub_download + a sha256 pass (the verified library route): "
          f"{results['hf + sha256 pass'] / results['own']:.2f}x the speed")
    print(f"own vs hf_hub_download alone (checks the size only): {results['hf_hub_download'] / results['own']:.2f}x the speed")
    print(f"own / floor (plain GET, no hashing, no disk): {results['own'] / results['floor']:.2f}x the time")


if __name__ == "__main__":
    main()
