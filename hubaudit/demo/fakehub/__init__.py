"""A Hub-compatible loopback server (tests, ``hubaudit demo``, benchmarks). Not a pipeline stage."""

from hubaudit.demo.fakehub.adapters import random_adapter_files, write_random_adapter
from hubaudit.demo.fakehub.repos import FakeFile, FakeRepo, adapter_card, git_blob_sha1
from hubaudit.demo.fakehub.server import INVALID_CREDENTIALS, FakeHub, Fault, LoggedRequest

__all__ = ["INVALID_CREDENTIALS", "FakeFile", "FakeHub", "FakeRepo", "Fault", "LoggedRequest", "adapter_card",
           "git_blob_sha1", "random_adapter_files", "write_random_adapter"]
