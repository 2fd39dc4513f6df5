"""The database schema: SQLAlchemy 2.0 typed models (the single source the migrations must match).

Every constraint is named through ``NAMING_CONVENTION`` because Alembic's SQLite batch mode
recreates tables and needs names to drop or alter constraints (as Prefect's ``orm_models.py``
does). ``tests/store/test_migrations.py`` compares this metadata with the migration chain (the
``alembic check`` equivalent), so a change here needs a new migration (hubaudit/store/CONTRACT.md).

Times are stored as UTC; :class:`UTCDateTime` hands back timezone-aware values on every dialect
(SQLite keeps no offset). JSON columns use the generic ``JSON`` type (SQLite and PostgreSQL).
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s__%(column_0_N_name)s",
    "uq": "uq_%(table_name)s__%(column_0_N_name)s",
    "ck": "ck_%(table_name)s__%(constraint_name)s",
    "fk": "fk_%(table_name)s__%(column_0_N_name)s__%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always returned timezone-aware (SQLite drops offsets)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass a timezone-aware UTC time")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    # RUF012 (annotate mutable class attributes with ClassVar) does not apply: the name is SQLAlchemy's
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[Any]: JSON()}  # noqa: RUF012


class BaseModel(Base):
    """A base model whose adapters are audited (``Qwen/Qwen2.5-1.5B``)."""

    __tablename__ = "base_models"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(300), unique=True)
    created_at: Mapped[datetime]


class Adapter(Base):
    """One adapter repository (or local path) seen for one base; ``meta`` holds the Hub listing."""

    __tablename__ = "adapters"
    __table_args__ = (UniqueConstraint("base_id", "repo_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # uq (base_id, repo_id) indexes it
    base_id: Mapped[int] = mapped_column(ForeignKey("base_models.id", ondelete="CASCADE"))
    repo_id: Mapped[str] = mapped_column(String(1000), index=True)
    author: Mapped[str | None] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(20))  # "hub" | "local"
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]
    removed: Mapped[bool] = mapped_column(Boolean, default=False)
    # downloads, likes, tags, gated, created_at, last_modified, siblings, card_base_model, ...
    meta: Mapped[dict[str, Any]]


class Revision(Base):
    """One commit of an adapter (or one content hash of a local path) and what happened to it."""

    __tablename__ = "revisions"
    __table_args__ = (UniqueConstraint("adapter_id", "sha"), Index(None, "repo_id", "sha"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("adapters.id", ondelete="CASCADE"))
    repo_id: Mapped[str] = mapped_column(String(1000))  # denormalised: crawl looks up (repo_id, sha)
    sha: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))  # scored | unsupported | error | skipped | retry
    reason: Mapped[str | None] = mapped_column(String(100))  # short machine code
    error: Mapped[str | None] = mapped_column(Text)  # one human line
    files: Mapped[list[Any]]  # [{"name", "size", "sha256"}]
    declared_base: Mapped[str | None] = mapped_column(String(300))
    provenance: Mapped[dict[str, Any]]
    recorded_at: Mapped[datetime]


class WeightScore(Base):
    """The weight statistics of one scored revision under one feature-set version."""

    __tablename__ = "weight_scores"
    __table_args__ = (UniqueConstraint("revision_id", "featureset_version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"))
    featureset_version: Mapped[str] = mapped_column(String(40))
    score: Mapped[float | None] = mapped_column(Float)  # global_frobN_std (arXiv 2605.30189)
    stratum: Mapped[str] = mapped_column(String(500), index=True)  # models.stratum_key
    # the features packed for calibration (store/_sql.feature_columns): float64 little-endian in
    # sorted-name order, NaN = None, and a digest of the name list; NULL on rows written before
    # migration 5b1c0e9d7a21. Before the JSON columns: SQLite reads a row's columns in order.
    feature_digest: Mapped[str | None] = mapped_column(String(32))
    feature_vec: Mapped[bytes | None] = mapped_column(LargeBinary)
    features: Mapped[dict[str, Any]]
    module_norms: Mapped[dict[str, Any]]  # {"fields": ModuleStat field names, "rows": [[...] per module]}
    summary: Mapped[dict[str, Any]]  # ScanResult.to_dict(with_modules=False)
    created_at: Mapped[datetime]


class ThresholdSet(Base):
    """A versioned calibration of one base: per-stratum fits; one active per base."""

    __tablename__ = "threshold_sets"
    __table_args__ = (UniqueConstraint("base_id", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_id: Mapped[int] = mapped_column(ForeignKey("base_models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    method: Mapped[str] = mapped_column(String(100))
    featureset_version: Mapped[str] = mapped_column(String(40))
    n: Mapped[int] = mapped_column(Integer)
    strata: Mapped[dict[str, Any]]
    params: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class BehaviourCalibration(Base):
    """A versioned behavioural calibration of one base: the probe battery's thresholds, τ_search or
    PSIM's τ (``kind``, a CalibrationKind); the newest version per (base, kind) is the one in force."""

    __tablename__ = "behaviour_calibrations"
    __table_args__ = (UniqueConstraint("base_id", "kind", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_id: Mapped[int] = mapped_column(ForeignKey("base_models.id", ondelete="CASCADE"))  # the uq indexes it
    kind: Mapped[str] = mapped_column(String(20))  # probe | search | psim
    version: Mapped[int] = mapped_column(Integer)  # 1, 2, ... per (base, kind)
    thresholds: Mapped[dict[str, Any]]  # the thresholds object's to_dict()
    source: Mapped[str] = mapped_column(Text)  # how they were fitted (the object's rule text)
    n_clean: Mapped[int] = mapped_column(Integer)  # known-clean adapters they were fitted on
    fingerprint: Mapped[str] = mapped_column(String(64))  # sha256 of the canonical thresholds JSON, 16 hex digits
    created_at: Mapped[datetime]


class Verdict(Base):
    """The judgement of one revision under one threshold set; ``flagged`` NULL = not calibrated."""

    __tablename__ = "verdicts"
    __table_args__ = (UniqueConstraint("revision_id", "threshold_set_id"), Index(None, "threshold_set_id"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"))
    threshold_set_id: Mapped[int] = mapped_column(ForeignKey("threshold_sets.id", ondelete="CASCADE"))
    flagged: Mapped[bool | None] = mapped_column(Boolean)
    breakdown: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class Run(Base):
    """One command invocation: the audit trail cron leaves behind."""

    __tablename__ = "runs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    command: Mapped[str] = mapped_column(String(100))
    args: Mapped[dict[str, Any]]
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    counts: Mapped[dict[str, Any]]
    exit_status: Mapped[int | None] = mapped_column(Integer)


class ProbeJob(Base):
    """The durable escalation queue: one job per revision, leased by workers."""

    __tablename__ = "probe_jobs"
    __table_args__ = (UniqueConstraint("revision_id"), Index(None, "status", "priority"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20))  # queued | running | done | failed
    priority: Mapped[float] = mapped_column(Float)  # higher first
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    last_error: Mapped[str | None] = mapped_column(Text)


class ProbeResult(Base):
    """The outcome of one finished probe job (battery attack rates, trigger search, ...)."""

    __tablename__ = "probe_results"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("probe_jobs.id", ondelete="CASCADE"), index=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"), index=True)
    result: Mapped[dict[str, Any]]
    flagged: Mapped[bool | None] = mapped_column(Boolean)
    created_at: Mapped[datetime]


class AdapterFingerprint(Base):
    """The fingerprint of one scored revision (models.Fingerprint; float16 little-endian ``vec``)."""

    __tablename__ = "fingerprints"
    __table_args__ = (UniqueConstraint("revision_id", "version"), Index(None, "version"))
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    revision_id: Mapped[int] = mapped_column(ForeignKey("revisions.id", ondelete="CASCADE"))
    version: Mapped[str] = mapped_column(String(20))
    dim: Mapped[int] = mapped_column(Integer)
    n_modules: Mapped[int] = mapped_column(Integer)
    vec: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class BlocklistEntry(Base):
    """A known-bad adapter fingerprint imported from elsewhere (another team's audit, an advisory)."""

    __tablename__ = "blocklist_entries"
    __table_args__ = (UniqueConstraint("base_id", "label", "version"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    base_id: Mapped[int] = mapped_column(ForeignKey("base_models.id", ondelete="CASCADE"))
    label: Mapped[str] = mapped_column(String(1100))  # "repo@sha" or a free name
    source: Mapped[str] = mapped_column(String(1000))  # where it was imported from
    reason: Mapped[str | None] = mapped_column(Text)
    version: Mapped[str] = mapped_column(String(20))
    dim: Mapped[int] = mapped_column(Integer)
    n_modules: Mapped[int] = mapped_column(Integer)
    vec: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]


class DownstreamRepo(Base):
    """A Hub repo that declares an audited adapter as its base (``base_model:<relation>:<repo>``)."""

    __tablename__ = "downstream_repos"
    __table_args__ = (UniqueConstraint("adapter_id", "repo_id", "relation"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("adapters.id", ondelete="CASCADE"))
    repo_id: Mapped[str] = mapped_column(String(1000))
    relation: Mapped[str] = mapped_column(String(20))  # adapter | merge | finetune | quantized
    first_seen: Mapped[datetime]
    last_seen: Mapped[datetime]


TABLES = Base.metadata.tables
