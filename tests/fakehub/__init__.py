"""Test-side wrapper of the Hub-compatible loopback server (the server lives in hubaudit.demo.fakehub
so `hubaudit demo` and the benchmarks can use it at run time)."""

from __future__ import annotations

from hubaudit.demo.fakehub import FakeHub, FakeRepo, Fault, random_adapter_files, write_random_adapter

__all__ = ["FakeHub", "FakeRepo", "Fault", "populate", "random_adapter_files", "write_random_adapter"]


def populate(hub: FakeHub, base: str, n: int, *, prefix: str = "user", seed0: int = 0, **kwargs) -> list[str]:
    """Add ``n`` random LoRA adapters of ``base``; returns their repo ids."""
    ids = []
    for i in range(n):
        repo_id = f"{prefix}{i}/lora-{i}"
        hub.add_adapter(repo_id, base, seed=seed0 + i, **kwargs)
        ids.append(repo_id)
    return ids
