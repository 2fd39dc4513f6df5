"""Retry, rate-limit and timeout plumbing against real responses from the loopback Hub."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from huggingface_hub import HfApi

from hubaudit.httpclient import RetryPolicy, call_with_retry, classify, hub_client, rate_limit_wait
from tests.crawl.conftest import BASE, crawl_args, rows_by_repo
from tests.fakehub import Fault, populate


def test_rate_limit_headers_are_parsed():
    assert rate_limit_wait({"RateLimit": '"api";r=0;t=42'}) == 42
    assert rate_limit_wait({"RateLimit": '"api";r=3;t=42'}) is None  # requests left: not a reset wait
    assert rate_limit_wait({"Retry-After": "7"}) == 7
    assert rate_limit_wait({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) is None
    assert rate_limit_wait({}) is None


def _info(hub, repo_id):
    api = HfApi(endpoint=hub.url, token=False)
    return lambda: api.model_info(repo_id, timeout=5)


def test_retry_waits_what_the_server_asks_then_backs_off(hub):
    populate(hub, BASE, 1)
    hub.add_fault(Fault("status", endpoint="info", status=429, reset=9, times=1))
    hub.add_fault(Fault("status", endpoint="info", status=429, reset=4, retry_after_header=True, times=1))
    hub.add_fault(Fault("status", endpoint="info", status=503, times=3))
    slept: list[float] = []
    info = call_with_retry(_info(hub, "user0/lora-0"), RetryPolicy(max_retries=5, base_delay=1, max_delay=3),
                           sleep=slept.append)
    assert info.id == "user0/lora-0"
    assert 9 <= slept[0] < 9.3 and 4 <= slept[1] < 4.3  # RateLimit t=, then Retry-After, plus jitter
    assert [0.5 <= slept[2] <= 1, 1 <= slept[3] <= 2, 1.5 <= slept[4] <= 3] == [True] * 3  # exponential, capped


def test_budget_exhausted_reraises_with_a_classifiable_error(hub):
    populate(hub, BASE, 1)
    hub.add_fault(Fault("status", endpoint="info", status=429, reset=0, times=None))
    with pytest.raises(Exception) as err:
        call_with_retry(_info(hub, "user0/lora-0"), RetryPolicy(max_retries=2), sleep=lambda s: None)
    assert classify(err.value).kind == "rate_limited"
    assert hub.count("info") == 3


def test_not_found_is_never_retried(hub):
    with pytest.raises(Exception) as err:
        call_with_retry(_info(hub, "no/such-repo"), RetryPolicy(), sleep=lambda s: None)
    assert classify(err.value).kind == "not_found" and hub.count("info") == 1


def test_listing_gets_a_timeout_even_though_the_client_passes_none(hub, cli, monkeypatch):
    import huggingface_hub.utils._http as hf_http

    monkeypatch.setattr(hf_http, "time", SimpleNamespace(sleep=lambda s: None))
    populate(hub, BASE, 2)
    hub.add_fault(Fault("latency", endpoint="list", delay=1.5, times=None))
    res = cli(*crawl_args(hub, "--timeout", "0.2"))
    assert res.code == 4 and "listing failed" in res.err and "Timeout" in res.err
    hub.clear_faults()
    with hub_client(5.0):  # the factory is restored afterwards: default client again, no timeout
        assert len(list(HfApi(endpoint=hub.url, token=False).list_models(filter="peft"))) == 2
    assert hf_http._GLOBAL_CLIENT_FACTORY is hf_http.default_client_factory


def test_gated_repo_with_an_unapproved_token_is_skipped(hub, cli, store):
    hub.add_adapter("g/gated", BASE, seed=3, gated="manual")
    res = cli(*crawl_args(hub), env={"HF_TOKEN": "not-approved"})
    assert res.code == 0, res.err
    row = rows_by_repo(store)["g/gated"]
    assert (row.status, row.reason) == ("skipped", "gated")
    assert hub.count("resolve", method="GET") >= 1  # it tried, with the token, and was refused


def test_an_adapter_listed_under_the_base_and_a_child_is_crawled_once(hub, cli):
    mirror = "unsloth/Qwen2.5-1.5B-bnb-4bit"
    hub.add_repo(mirror, {"model.safetensors": b"q"}, tags=[f"base_model:quantized:{BASE}"])
    hub.add_adapter("both/lora", BASE, seed=1,
                    tags=["peft", f"base_model:adapter:{BASE}", f"base_model:adapter:{mirror}"])
    summary = json.loads(cli(*crawl_args(hub, "--include-derived")).out)
    assert summary["listed"] == 1 and summary["fetched"] == 1
