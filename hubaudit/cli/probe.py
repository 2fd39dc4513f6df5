"""``hubaudit escalate`` / ``probe`` / ``probe-adapter`` / ``probe-calibrate``: behavioral probing."""

from __future__ import annotations

import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from hubaudit.cli._options import ConfigOpt, DbOpt, err_console
from hubaudit.cli.app import app
from hubaudit.errors import HubauditError
from hubaudit.executors import ExecutorName
from hubaudit.pipeline.runs import recorded_run
from hubaudit.probe.batteries import builtin_names
from hubaudit.probe.modes import MODES, TRIGGER_METHODS, ProbeMode
from hubaudit.textsafe import terminal
from hubaudit.vocab import ProbeStatus, StrEnum


class _NotProbed(HubauditError):
    """The adapter could not be probed (exit 3: could not be audited)."""

    exit_code = 3


class Fmt(str, Enum):
    table = "table"
    json = "json"


# The --mode choices, from the one map of probe modes (members named like their values: Mode.auto).
Mode = StrEnum("Mode", {m.value: m.value for m in MODES})  # type: ignore[misc]

BatteryOpt = Annotated[str, typer.Option("--battery", help=f"Built-in battery ({', '.join(builtin_names())}) or a "
                                                           "JSON file.")]
PromptsOpt = Annotated[str | None, typer.Option("--prompts", help="JSONL file with a 'text' field per line (replaces "
                                                                  "the built-in set).")]
ModeOpt = Annotated[Mode, typer.Option("--mode", help=f"auto: {MODES[ProbeMode.AUTO]}.")]
TargetOpt = Annotated[str | None, typer.Option("--target-label", help="Attacker's label (index or name); default: try "
                                                                      "all, report the worst.")]
LabelWordsOpt = Annotated[str | None, typer.Option("--label-words",
                                                   help="Comma-separated label words of a causal-LM classifier (reads "
                                                        "a CAUSAL_LM adapter as a classifier under --mode auto; "
                                                        "--mode causal_label without them: BENIGN,INJECTION).")]
SystemOpt = Annotated[str | None, typer.Option("--system-prompt", help="System prompt of a causal-LM classifier "
                                                                       "(default: the paper's).")]
ThrOpt = Annotated[str | None, typer.Option("--thresholds", help="Thresholds JSON (probe-calibrate --out); default: "
                                                                 "the base's newest calibration in the database, else "
                                                                 "0.10/0.10.")]
SearchOpt = Annotated[bool, typer.Option("--search/--no-search", help="Also search for an unknown trigger (candidates "
                                                                      "from the weights).")]
SearchBudgetOpt = Annotated[int, typer.Option("--search-budget", min=10,
                                              help="Search budget in forward passes per adapter.")]
SearchThrOpt = Annotated[str | None, typer.Option("--search-thresholds",
                                                  help="τ_search JSON (probe-calibrate --search --out); default: the "
                                                       "base's newest in the database (probe), else report only, never "
                                                       "flags.")]
# Target inversion of generative adapters (with --search). probe-calibrate must use the same sizes as
# the probes its τ is applied to: the score depends on the prompts, the steps and the chat template.
InvertOpt = Annotated[bool, typer.Option("--invert/--no-invert",
                                         help="With --search, generative adapters are scanned by base-relative target "
                                              "inversion (BAIT); --no-invert: the generation-change search instead.")]
NoChatOpt = Annotated[bool, typer.Option("--no-chat-template", help="Inversion prompts as raw text, not through the "
                                                                    "tokenizer's chat template.")]
InvPromptsOpt = Annotated[int, typer.Option("--invert-prompts", min=1,
                                            help="Prompts the inverted target must be consistent across.")]
InvStepsOpt = Annotated[int, typer.Option("--invert-steps", min=1, help="Target tokens generated after the "
                                                                        "forced first token.")]
InvChunkOpt = Annotated[int | None, typer.Option("--invert-chunk", min=1,
                                                 help="Candidate first tokens per batch (chunk x prompts rows per "
                                                      "forward: memory); default: as many as fit half the free device "
                                                      "memory (at most 128 on a CPU).")]
InvPrefilterOpt = Annotated[int | None, typer.Option("--invert-prefilter", min=1,
                                                     help="Scan only the K first tokens the adapter favours most over "
                                                          "the base (faster; default: the whole vocabulary).")]
InvScreenOpt = Annotated[int, typer.Option("--invert-screen", min=0, help="Extend all first tokens 2 steps, then only "
                                                                       "the best K fully (0: every one fully).")]
NoTriggerOpt = Annotated[bool, typer.Option("--no-trigger-search", help="Invert the target only; do not "
                                                                        "search its trigger.")]
TriggerMethod = StrEnum("TriggerMethod", {m: m for m in TRIGGER_METHODS})  # type: ignore[misc]
TriggerMethodOpt = Annotated[TriggerMethod, typer.Option(
    "--trigger-method", help="How the inverted target's trigger is searched: "
    + "; ".join(f"{k}: {v}" for k, v in TRIGGER_METHODS.items()) + ".")]


def _probe_options(mode: Mode, target: str | None, label_words: str | None, system: str | None, batch_size: int):
    from hubaudit.probe.prober import ProbeOptions
    from hubaudit.probe.prompting import DEFAULT_LABEL_WORDS, DEFAULT_SYSTEM_PROMPT

    words = tuple(w.strip() for w in label_words.split(",") if w.strip()) if label_words else ()
    if not words and mode is Mode.causal_label:
        words = DEFAULT_LABEL_WORDS
    # No label words under auto: a CAUSAL_LM adapter is read as a generator (chat and instruction
    # adapters have no label to flip); SEQ_CLS adapters read their head and ignore the words.
    return ProbeOptions(mode=mode.value, target_label=target, label_words=words,
                        system_prompt=system or DEFAULT_SYSTEM_PROMPT, batch_size=batch_size)


def _home():
    # Commands without a database need only the data directory, which the configuration file does
    # not set: the environment (HUBAUDIT_HOME) or the platform default decides.
    from hubaudit.settings import Settings

    return Settings.from_env().home


def _battery(spec: str):
    # An unknown name or a bad file is an InputError (exit 2) before any model is loaded.
    from hubaudit.probe.batteries import load_battery

    return load_battery(spec)


@app.command("escalate")
def escalate_cmd(
    base: Annotated[str, typer.Option("--base", "-b", help="Base model whose adapter revisions are queued.")],
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="At most this many new jobs.")] = None,
    flagged_only: Annotated[bool, typer.Option("--flagged-only", help="Queue only weight-flagged revisions.")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="Queue again the revisions whose probe job "
                                                                       "failed for good (default: left out).")] = False,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """Queue every scored, not yet probed adapter revision of BASE for behavioral probing, flagged and
    unflagged (order: weight margin, then downloads)."""
    from hubaudit.pipeline.escalate import escalate
    from hubaudit.settings import Settings
    from hubaudit.store import Store

    with Store.open(Settings.resolve(db, config).db_url, create=True) as store:
        s = escalate(store, base, limit=limit, flagged_only=flagged_only, retry_failed=retry_failed)
    sys.stdout.write(json.dumps(s.to_dict()) + "\n")
    err_console.print(f"escalate {base}: queued {s.queued} ({s.queued_flagged} flagged, {s.queued_unflagged} "
                      f"unflagged), {s.already} already queued or probed, {s.probed} with a probe verdict"
                      + (f"; {s.unflagged} unflagged left out (--flagged-only)" if flagged_only and s.unflagged else "")
                      + (f"; {s.failed} failed for good left out (--retry-failed queues them)" if s.failed else ""))


@app.command("probe")
def probe_cmd(
    base: Annotated[str, typer.Option("--base", "-b", help="Base model whose queued jobs are probed.")],
    executor: Annotated[ExecutorName, typer.Option("--executor", help="Where probe tasks run.")] = ExecutorName.local,
    base_model_path: Annotated[str | None,
                               typer.Option("--base-model-path", help="Local directory of the base weights.")] = None,
    budget_seconds: Annotated[float, typer.Option("--budget-seconds", min=1,
                                                  help="Stop claiming jobs once probing has used this "
                                                       "many device-seconds.")] = 3600,
    budget: Annotated[int | None, typer.Option("--budget", "--max-jobs", min=1,
                                               help="Also at most this many jobs this run (default: no cap).")] = None,
    ray_address: Annotated[str | None, typer.Option("--ray-address",
                                                    help="Ray cluster address (default: start a local one).")] = None,
    battery: BatteryOpt = "paper-21-B",
    prompts: PromptsOpt = None,
    mode: ModeOpt = Mode.auto,
    target_label: TargetOpt = None,
    label_words: LabelWordsOpt = None,
    system_prompt: SystemOpt = None,
    thresholds: ThrOpt = None,
    max_attempts: Annotated[int, typer.Option("--max-attempts", min=1,
                                              help="Failed jobs are retried up to this many attempts.")] = 3,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="Prompts per forward pass.")] = 32,
    search: SearchOpt = True,
    search_budget: SearchBudgetOpt = 1500,
    search_thresholds: SearchThrOpt = None,
    invert: InvertOpt = True,
    no_chat_template: NoChatOpt = False,
    invert_prompts: InvPromptsOpt = 8,
    invert_steps: InvStepsOpt = 6,
    invert_chunk: InvChunkOpt = None,
    invert_prefilter: InvPrefilterOpt = None,
    invert_screen: InvScreenOpt = 512,
    no_trigger_search: NoTriggerOpt = False,
    trigger_method: TriggerMethodOpt = TriggerMethod.beam,
    db: DbOpt = None,
    config: ConfigOpt = None,
    fmt: Annotated[Fmt, typer.Option("--format", "-f")] = Fmt.table,
) -> None:
    """Work through the probe queue of BASE: load the base once, hot-swap each adapter, run the battery."""
    from hubaudit.pipeline.behaviour import calibration_record
    from hubaudit.pipeline.probe import ProbeRunOptions, probe_queue
    from hubaudit.settings import Settings
    from hubaudit.store import Store

    settings = Settings.resolve(db, config)
    _battery(battery)
    args = {"base": base, "executor": executor.value, "budget": budget, "budget_seconds": budget_seconds,
            "battery": battery}
    with Store.open(settings.db_url, create=True) as store:
        th = _resolve_probe(thresholds, base, store, settings.home)
        cfg, tau = _search_options(search, search_budget, search_thresholds, base, settings.home, store)
    opts = ProbeRunOptions(base=base, base_model_path=base_model_path, executor=executor.value, address=ray_address,
                           budget=budget, budget_seconds=budget_seconds, battery=battery, prompts_file=prompts,
                           max_attempts=max_attempts, thresholds=th.value,
                           probe_options=_probe_options(mode, target_label, label_words, system_prompt, batch_size),
                           search=cfg, search_thresholds=tau.value if tau else None,
                           calibration=calibration_record(th.ref, tau.ref if tau else None))
    opts.invert = _invert_options(search and invert, invert_prompts, invert_steps, invert_chunk, invert_prefilter,
                                  no_chat_template, no_trigger_search, invert_screen, trigger_method.value)
    with Store.open(settings.db_url, create=True) as store, recorded_run(store, "probe", args) as run:
        summary = probe_queue(store, opts)
        # A queue run that worked exits 0 even with findings (they are data, as for crawl and
        # nightly); a failure is recorded by recorded_run with the code the CLI exits with.
        run.counts = {k: summary[k] for k in ("claimed", "probed", "flagged", "failed", "released", "remaining_queued")}
        run.counts["seconds_used"] = round(summary["seconds_used"])
    if fmt is Fmt.json:
        sys.stdout.write(json.dumps(summary) + "\n")
    else:
        for r in summary["results"]:
            fields = [r["repo_id"], r["sha"][:12]]
            if r["status"] == ProbeStatus.OK:
                fields += [f"{r['outlier_gap']:.4f}", f"{r['mean_attack_rate']:.4f}",
                           "FLAGGED" if r["flagged"] else "clean"]
            else:
                fields.append(r["reason"])
            # target inversion (generative adapters)
            if r["status"] == ProbeStatus.OK and r.get("search_target") is not None:
                fields.append(f"target {r['search_target']!r} {r.get('search_target_score', 0.0):.4f}")
            # the blind search's recovered trigger
            if r["status"] == ProbeStatus.OK and r.get("search_trigger") is not None:
                fields.append(f"trigger {r['search_trigger']!r} {r.get('search_attack_rate', 0.0):.4f}")
            # each field escaped: one row, fixed columns
            sys.stdout.write("\t".join(terminal(f) for f in fields) + "\n")
    err_console.print(f"probe {base}: {summary['probed']} probed, {summary['flagged']} flagged, {summary['failed']} "
                      f"failed (battery {summary['battery']['name']} v{summary['battery']['version']}); "
                      f"{summary['seconds_used']:.0f} of {budget_seconds:.0f} device-seconds used, "
                      f"{summary['remaining_queued']} still queued")


@app.command("probe-adapter")
def probe_adapter_cmd(
    adapter_path: Annotated[str, typer.Argument(help="Local adapter directory.")],
    base_model: Annotated[str, typer.Option("--base-model", help="Local directory of the base weights "
                                                                 "(never downloaded).")],
    prompts: PromptsOpt = None,
    target_label: TargetOpt = None,
    battery: BatteryOpt = "paper-21-B",
    mode: ModeOpt = Mode.auto,
    label_words: LabelWordsOpt = None,
    system_prompt: SystemOpt = None,
    thresholds: ThrOpt = None,
    batch_size: Annotated[int, typer.Option("--batch-size", min=1)] = 32,
    search: SearchOpt = False,
    search_budget: SearchBudgetOpt = 1500,
    search_thresholds: SearchThrOpt = None,
    invert: InvertOpt = True,
    no_chat_template: NoChatOpt = False,
    invert_prompts: InvPromptsOpt = 8,
    invert_steps: InvStepsOpt = 6,
    invert_chunk: InvChunkOpt = None,
    invert_prefilter: InvPrefilterOpt = None,
    invert_screen: InvScreenOpt = 512,
    no_trigger_search: NoTriggerOpt = False,
    trigger_method: TriggerMethodOpt = TriggerMethod.beam,
    fmt: Annotated[Fmt, typer.Option("--format", "-f")] = Fmt.table,
) -> None:
    """Probe one adapter ad hoc; exit 1 when it is flagged, 3 when it could not be probed."""
    from hubaudit.pipeline.probe import probe_one

    r = probe_one(adapter_path, base_model, **probe_one_kwargs(
        battery=battery, prompts=prompts, thresholds=thresholds, mode=mode, target_label=target_label,
        label_words=label_words, system_prompt=system_prompt, batch_size=batch_size, search=search,
        search_budget=search_budget, search_thresholds=search_thresholds, invert=invert,
        no_chat_template=no_chat_template, invert_prompts=invert_prompts, invert_steps=invert_steps,
        invert_chunk=invert_chunk, invert_prefilter=invert_prefilter, no_trigger_search=no_trigger_search,
        invert_screen=invert_screen, trigger_method=trigger_method.value))
    if fmt is Fmt.json:
        sys.stdout.write(json.dumps(r) + "\n")
    elif r["status"] == ProbeStatus.OK:
        for p in r["probes"]:
            sys.stdout.write("\t".join(terminal(f) for f in (f"{p['attack_rate']:.4f}", p["category"], p["prefix"]))
                             + "\n")
    if r["status"] != ProbeStatus.OK:
        raise _NotProbed(f"could not probe {adapter_path}: {r['reason']}: {r.get('error', '')}")
    err_console.print(f"{'FLAGGED' if r['flagged'] else 'not flagged'}: outlier_gap {r['outlier_gap']:.4f} "
                      f"(τ {r['thresholds']['gap']}), mean_attack_rate {r['mean_attack_rate']:.4f} "
                      f"(τ {r['thresholds']['mean']}), {_target_part(r)}{r['n_eligible']} eligible prompts, "
                      f"battery {r['battery']['name']}")
    _print_search(r)
    if r["flagged"]:
        raise typer.Exit(1)


@app.command("probe-calibrate")
def probe_calibrate_cmd(
    clean: Annotated[list[str], typer.Argument(help="Known-clean adapter directories.")],
    base_model: Annotated[str, typer.Option("--base-model", help="Local directory of the base weights.")],
    base: Annotated[str | None, typer.Option("--base", "-b", help="Store the thresholds in the database as this base's "
                                                                  "newest calibration.")] = None,
    out: Annotated[str | None, typer.Option("--out", help="Write the thresholds JSON here.")] = None,
    margin: Annotated[float, typer.Option("--margin", min=0.0, help="Added to the clean maxima.")] = 0.02,
    prompts: PromptsOpt = None,
    target_label: TargetOpt = None,
    battery: BatteryOpt = "paper-21-B",
    mode: ModeOpt = Mode.auto,
    label_words: LabelWordsOpt = None,
    system_prompt: SystemOpt = None,
    search: Annotated[bool, typer.Option("--search/--no-search",
                                         help="Also search the clean adapters and fit τ_search.")] = True,
    search_budget: SearchBudgetOpt = 1500,
    search_fpr: Annotated[float, typer.Option("--search-fpr", min=0.001, max=0.5, help="Target false-positive rate of "
                                               "τ_search (order statistic once there are ⌈1/FPR⌉−1 "
                                               "clean adapters).")] = 0.05,
    search_margin: Annotated[float, typer.Option("--search-margin", min=0.0, help="Added to the clean maximum while "
                                                                                  "too few clean adapters.")] = 0.1,
    search_out: Annotated[str | None, typer.Option("--search-out", help="Write τ_search here (default with --out: next "
                                                                        "to it, *.search.json).")] = None,
    invert: InvertOpt = True,
    no_chat_template: NoChatOpt = False,
    invert_prompts: InvPromptsOpt = 8,
    invert_steps: InvStepsOpt = 6,
    invert_chunk: InvChunkOpt = None,
    invert_prefilter: InvPrefilterOpt = None,
    invert_screen: InvScreenOpt = 512,
    db: DbOpt = None,
    config: ConfigOpt = None,
) -> None:
    """τ_gap, τ_mean = max over known-clean adapters + margin (arXiv 2605.30189); with --search also τ_search; stored
    as BASE's newest calibration in the database (--base) and/or written to --out."""
    from hubaudit.errors import UsageError
    from hubaudit.pipeline.behaviour import save_probe_calibration
    from hubaudit.pipeline.probe import probe_calibrate_search

    if not base and not out:
        raise UsageError("give --base (store as that base's newest calibration) or --out FILE")
    sdest = search_out or (str(Path(out).with_suffix(".search.json")) if out else None)
    cfg, _ = _search_options(search, search_budget, None)
    th, _, tau = probe_calibrate_search(clean, base_model, battery=battery, prompts_file=prompts, margin=margin,
                                        out=out, probe_options=_probe_options(mode, target_label, label_words,
                                                                              system_prompt, 32),
                                        search=cfg, search_margin=search_margin, search_fpr=search_fpr,
                                        search_out=sdest if cfg is not None else None,
                                        invert=_invert_options(search and invert, invert_prompts, invert_steps,
                                                               invert_chunk, invert_prefilter, no_chat_template, False,
                                                               invert_screen))
    stored = {}
    if base:
        from hubaudit.settings import Settings
        from hubaudit.store import Store

        with Store.open(Settings.resolve(db, config).db_url, create=True) as store:
            stored = save_probe_calibration(store, base, th, tau)
    sys.stdout.write(json.dumps(th.to_dict() | ({"search": tau.to_dict()} if tau else {})
                                | {"stored": {k: r.to_dict() for k, r in stored.items()}}) + "\n")
    dests = [*([stored["probe"].describe()] if "probe" in stored else []), *([out] if out else [])]
    err_console.print(f"probe thresholds: gap {th.gap}, mean {th.mean} from {th.n_clean} clean adapter(s) -> "
                      f"{'; '.join(dests)}")
    if tau is not None:
        sdests = [*([stored["search"].describe()] if "search" in stored else []), *([sdest] if sdest else [])]
        err_console.print(f"τ_search {tau.per_label} ({tau.rule}; {tau.source}) -> {'; '.join(sdests)}")


def probe_one_kwargs(*, battery: str = "paper-21-B", prompts: str | None = None, thresholds: str | None = None,
                     mode: Mode = Mode.auto, target_label: str | None = None, label_words: str | None = None,
                     system_prompt: str | None = None, batch_size: int = 32, search: bool = True,
                     search_budget: int = 1500, search_thresholds: str | None = None, invert: bool = True,
                     no_chat_template: bool = False, invert_prompts: int = 8, invert_steps: int = 6,
                     invert_chunk: int | None = None, invert_prefilter: int | None = None,
                     no_trigger_search: bool = False, invert_screen: int = 512, trigger_method: str = "beam",
                     base: str | None = None, store=None) -> dict:
    """The keyword arguments of ``pipeline.probe.probe_one`` from the probe options of a command.

    ``probe-adapter`` and ``check --base-model`` share it, so one adapter is probed the same way by
    both. Thresholds: the given files, else ``base``'s newest in ``store``, else its legacy files, else the
    defaults; the result records which (``calibration``)."""
    from hubaudit.pipeline.behaviour import calibration_record

    th = _resolve_probe(thresholds, base, store, _home())
    cfg, tau = _search_options(search, search_budget, search_thresholds, base, None, store)
    return {"battery": _battery(battery), "prompts_file": prompts, "thresholds": th.value,
            "calibration": calibration_record(th.ref, tau.ref if tau else None),
            "probe_options": _probe_options(mode, target_label, label_words, system_prompt, batch_size),
            "search": cfg, "search_thresholds": tau.value if tau else None,
            "invert": _invert_options(search and invert, invert_prompts, invert_steps, invert_chunk, invert_prefilter,
                                      no_chat_template, no_trigger_search, invert_screen, trigger_method)}


# ---------------------------------------------------------------- blind trigger search
def _resolve_probe(file: str | None, base: str | None, store, home):
    """The battery thresholds (pipeline.behaviour.Resolved); a legacy file's notice goes to stderr."""
    from hubaudit.pipeline.behaviour import resolve_calibration
    from hubaudit.vocab import CalibrationKind

    got = resolve_calibration(CalibrationKind.PROBE, home, base, file, store)
    if got.notice:
        err_console.print(f"Notice: {terminal(got.notice)}")
    return got


def _search_options(on: bool, budget: int, thresholds_file: str | None, base: str | None = None, home=None, store=None):
    """(SearchConfig, Resolved τ_search) for the pipeline, or (None, None) with --no-search.

    τ_search: ``thresholds_file``, else ``base``'s newest in ``store``, else its legacy file, else uncalibrated."""
    if not on:
        return None, None
    from hubaudit.errors import UsageError
    from hubaudit.pipeline.behaviour import resolve_calibration
    from hubaudit.probe.search import SearchConfig
    from hubaudit.vocab import CalibrationKind

    try:
        tau = resolve_calibration(CalibrationKind.SEARCH, home or _home(), base, thresholds_file, store)
    except (OSError, ValueError, KeyError) as exc:
        raise UsageError(f"cannot read --search-thresholds {thresholds_file}: {exc}") from None
    if tau.notice:
        err_console.print(f"Notice: {terminal(tau.notice)}")
    return SearchConfig(budget=budget), tau


def _invert_options(on: bool, n_prompts: int, steps: int, chunk: int | None, prefilter: int | None,
                    no_chat_template: bool, no_trigger_search: bool, screen: int = 512, trigger_method: str = "beam"):
    """The InversionConfig generative adapters are scanned with under --search, or None (--no-search, --no-invert)."""
    if not on:
        return None
    from hubaudit.probe.invert import InversionConfig

    return InversionConfig(n_prompts=n_prompts, steps=steps, chunk=chunk, prefilter=prefilter or None,
                           chat_template=not no_chat_template, trigger=not no_trigger_search, screen=screen or None,
                           trigger_method=trigger_method)


def _target_part(r: dict) -> str:
    # generative probes have no attacker's label: their attack is any change of the continuation
    return f"target {r['target_label']}, " if r.get("target_label") is not None else ""


def _print_search(r: dict) -> None:
    s = r.get("search")
    if not s:
        return
    if s.get("status") != ProbeStatus.OK:
        err_console.print(f"blind search {s.get('status')}: {s.get('reason', '')}")
        return
    verdict = "FLAGGED" if s["flagged"] else "not flagged"
    uncal = " (τ_search uncalibrated: report only, run probe-calibrate --search)" if s["tau"] >= 1.0 else ""
    if s.get("method") == "target_inversion":
        if s.get("trigger") is not None and s.get("trigger_rate"):
            trig = f"trigger {s['trigger']!r} (target rate {s['trigger_rate']:.4f}, {s.get('trigger_mode')})"
        elif (s.get("trigger_search") or {}).get("trigger"):  # the best string never made the adapter emit the target
            trig = f"no trigger fires the target (best candidate {s['trigger_search']['trigger']!r})"
        else:
            trig = "no trigger recovered" if s.get("trigger_search") else "trigger not searched"
        err_console.print(f"target inversion {verdict}: target {s['target']!r} score {s['target_score']:.4f} "
                          f"(τ_search {s['tau']}{uncal}), {trig}, {s['forward_passes']} forward passes, "
                          f"{s['seconds']} s")
        if s.get("warning"):
            err_console.print(f"Warning: {s['warning']}")
        return
    err_console.print(f"blind search {verdict}: trigger {s['trigger']!r} ({s['mode']}) attack rate "
                      f"{s['attack_rate']:.4f}, robust rate {s.get('robust_rate', s['attack_rate']):.4f} (τ_search "
                      f"{s['tau']}{uncal}, target {s['label']}), {s['forward_passes']} forward passes, "
                      f"{s['seconds']} s")
