"""The crawl's skip rules (hubaudit.fetch.policy), applied to pinned metadata as the hub stage reads it."""

from __future__ import annotations

import pytest

from hubaudit.constants import ADAPTER_CONFIG, ADAPTER_PICKLE, ADAPTER_SAFETENSORS, MAX_CONFIG_BYTES
from hubaudit.fetch.policy import (
    FailureOutcome,
    Skip,
    failure_outcome,
    fetched_scan_outcome,
    header_status,
    needs_fetch,
    skip_before_download,
)
from hubaudit.hub import RepoFile, RepoInfo
from hubaudit.vocab import RevisionStatus, ScanStatus

SHA256 = "a" * 64
CAP = 1000


def _file(name: str, size: object = 10, lfs_sha256: str | None = SHA256) -> RepoFile:
    return RepoFile(name=name, size=size, blob_id="b" * 40, lfs_sha256=lfs_sha256)


def _info(*files: RepoFile, gated: bool | str | None = None, disabled: bool | None = None) -> RepoInfo:
    return RepoInfo(repo_id="user/lora", sha="c" * 40, gated=gated, disabled=disabled, files=files)


ADAPTER = (_file(ADAPTER_SAFETENSORS), _file(ADAPTER_CONFIG))


def _skip(info: RepoInfo, *, token: bool = False) -> Skip | None:
    return skip_before_download(info, has_token=token, max_file_bytes=CAP)


def test_an_adapter_with_usable_metadata_is_fetched():
    assert _skip(_info(*ADAPTER)) is None
    assert _skip(_info(*ADAPTER, gated="manual"), token=True) is None
    assert _skip(_info(_file(ADAPTER_SAFETENSORS, size=CAP), _file(ADAPTER_CONFIG, size=MAX_CONFIG_BYTES))) is None


@pytest.mark.parametrize(
    ("info", "status", "reason"),
    [
        (_info(*ADAPTER, disabled=True), RevisionStatus.SKIPPED, "disabled"),
        (_info(*ADAPTER, gated="auto"), RevisionStatus.SKIPPED, "gated"),
        (_info(_file(ADAPTER_PICKLE), _file(ADAPTER_CONFIG)), RevisionStatus.UNSUPPORTED, "pickle_format"),
        (_info(_file(ADAPTER_CONFIG)), RevisionStatus.SKIPPED, "no_adapter_files"),
        (_info(_file(ADAPTER_SAFETENSORS)), RevisionStatus.SKIPPED, "no_adapter_files"),
        (_info(_file(ADAPTER_SAFETENSORS, size=-1), _file(ADAPTER_CONFIG)), RevisionStatus.ERROR, "hostile_metadata"),
        (_info(_file(ADAPTER_SAFETENSORS), _file(ADAPTER_CONFIG, lfs_sha256="zz")), RevisionStatus.ERROR,
         "hostile_metadata"),
        (_info(_file(ADAPTER_SAFETENSORS, size=CAP + 1), _file(ADAPTER_CONFIG)), RevisionStatus.SKIPPED, "oversize"),
        (_info(_file(ADAPTER_SAFETENSORS), _file(ADAPTER_CONFIG, size=MAX_CONFIG_BYTES + 1)), RevisionStatus.SKIPPED,
         "oversize"),
    ],
)  # fmt: skip
def test_each_skip_rule_is_a_recorded_outcome_with_its_reason(info, status, reason):
    skip = _skip(info)
    assert skip is not None and (skip.status, skip.reason) == (status, reason) and skip.message


def test_the_rules_apply_in_order():
    # a disabled repo is reported as disabled whatever else is wrong with it
    assert _skip(_info(_file(ADAPTER_PICKLE), disabled=True, gated=True)).reason == "disabled"
    # hostile metadata is refused before its claimed size is believed
    bad = _info(_file(ADAPTER_SAFETENSORS, size=CAP + 1, lfs_sha256="zz"), _file(ADAPTER_CONFIG))
    assert _skip(bad).reason == "hostile_metadata"


def test_only_a_final_stored_outcome_spares_a_listed_revision():
    assert needs_fetch(None) and needs_fetch(RevisionStatus.RETRY)
    for status in set(RevisionStatus) - {RevisionStatus.RETRY}:
        assert not needs_fetch(status)


def test_an_oversize_header_is_skipped_and_any_other_refusal_is_an_error():
    assert header_status("oversize") == RevisionStatus.SKIPPED
    assert header_status("malformed_header") == header_status(None) == RevisionStatus.ERROR


def test_a_fetched_adapter_is_recorded_by_what_the_scanner_made_of_it():
    assert fetched_scan_outcome(ScanStatus.OK) == (RevisionStatus.SCORED, None)
    assert fetched_scan_outcome(ScanStatus.UNSUPPORTED) == (RevisionStatus.UNSUPPORTED, "unsupported_adapter")
    assert fetched_scan_outcome(ScanStatus.ERROR) == (RevisionStatus.ERROR, "malformed")


@pytest.mark.parametrize(
    ("kind", "reason", "expected"),
    [
        ("unreachable", "unreachable", FailureOutcome(RevisionStatus.RETRY, fatal="unavailable")),
        ("auth", "http_401", FailureOutcome(RevisionStatus.RETRY, fatal="auth")),
        ("rate_limited", "http_429", FailureOutcome(RevisionStatus.RETRY, fatal="rate_limited")),
        ("not_found", "http_404", FailureOutcome(RevisionStatus.SKIPPED)),
        ("gated", "http_403", FailureOutcome(RevisionStatus.SKIPPED)),
        ("disabled", "http_403", FailureOutcome(RevisionStatus.SKIPPED)),
        ("transient", "http_503", FailureOutcome(RevisionStatus.RETRY, transient=True)),
        ("hostile", "hostile_response", FailureOutcome(RevisionStatus.ERROR)),
        ("other", "http_418", FailureOutcome(RevisionStatus.ERROR)),
        ("other", "internal", FailureOutcome(RevisionStatus.RETRY)),
    ],
)
def test_a_failure_becomes_an_outcome_by_its_kind(kind, reason, expected):
    assert failure_outcome(kind, reason) == expected
