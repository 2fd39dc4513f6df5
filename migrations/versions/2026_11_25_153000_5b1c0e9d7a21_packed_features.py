"""weight_scores.feature_digest/feature_vec: the features packed for calibration (store/_sql.feature_columns)

A 100,000-adapter calibration spent most of its load parsing a JSON object per adapter that
repeats every feature name (benchmarks/bench_store.py). Existing rows are packed here from their
JSON, so an upgraded database calibrates at the same speed; the JSON column stays the record.

Revision ID: 5b1c0e9d7a21
Revises: 003887e4782a
Create Date: 2026-11-25 15:30:00
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import context, op

revision: str = "5b1c0e9d7a21"
down_revision: str | Sequence[str] | None = "003887e4782a"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 5000


def _pack(features: dict) -> tuple[str, bytes]:
    """store/_sql.feature_columns, frozen here: a migration must not change when the package does."""
    import numpy as np

    names = sorted(features)
    vals = [features[n] for n in names]
    arr = np.array([math.nan if v is None else float(v) for v in vals], dtype="<f8")
    return hashlib.blake2b("\x1f".join(names).encode(), digest_size=16).hexdigest(), arr.tobytes()


def upgrade() -> None:
    # On SQLite the table is rebuilt with the packed columns before the large JSON ones: SQLite walks a
    # row's overflow pages up to the column it reads, so a blob behind 6 KB of JSON costs 3x the read.
    # (`db upgrade --sql` cannot reflect the table to rebuild it: there the columns go last.)
    sqlite = op.get_context().dialect.name == "sqlite" and not context.is_offline_mode()
    where = {"insert_before": "features"} if sqlite else {}
    with op.batch_alter_table("weight_scores", schema=None, recreate="always" if sqlite else "auto") as batch_op:
        batch_op.add_column(sa.Column("feature_digest", sa.String(length=32), nullable=True), **where)
        batch_op.add_column(sa.Column("feature_vec", sa.LargeBinary(), nullable=True), **where)

    if context.is_offline_mode():  # `db upgrade --sql`: no rows to read; unpacked rows load from their JSON
        return
    conn = op.get_bind()
    ws = sa.table("weight_scores", sa.column("id", sa.Integer), sa.column("features", sa.JSON),
                  sa.column("feature_digest", sa.String), sa.column("feature_vec", sa.LargeBinary))  # fmt: skip
    upd = ws.update().where(ws.c.id == sa.bindparam("b_id")).values(
        feature_digest=sa.bindparam("b_digest"), feature_vec=sa.bindparam("b_vec"))  # fmt: skip
    last = 0
    while True:
        rows = conn.execute(sa.select(ws.c.id, ws.c.features).where(ws.c.id > last).order_by(ws.c.id).limit(_BATCH)).all()
        if not rows:
            break
        params = []
        for r in rows:
            feats = r.features if isinstance(r.features, dict) else json.loads(r.features or "{}")
            digest, vec = _pack(feats)
            params.append({"b_id": r.id, "b_digest": digest, "b_vec": vec})
        conn.execute(upd, params)
        last = rows[-1].id


def downgrade() -> None:
    with op.batch_alter_table("weight_scores", schema=None) as batch_op:
        batch_op.drop_column("feature_vec")
        batch_op.drop_column("feature_digest")
