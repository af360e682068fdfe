"""Store operations on the calibration history: one MoveSample per finished migration (issue 12)."""

from __future__ import annotations

from sqlmodel import Session, col, or_, select

from migration_core.models import MoveSample
from migration_core.store.base import StoreBase
from migration_core.store.schema import MoveSampleRow, sample_from_row, sample_to_row

# How many rows one read returns at most: calibration only looks at the newest few per tier anyway.
READ_LIMIT = 500


class SampleOps(StoreBase):
    """Add and read move samples."""

    async def add_move_sample(self, sample: MoveSample, job_id: int | None = None) -> None:
        """Record one finished migration's predicted and measured figures."""

        def write(_attempt: int) -> None:
            with self._tx(write=True) as s:
                s.add(sample_to_row(sample, job_id))

        await self._run("record a migration sample", write)

    async def move_samples(
        self,
        *,
        source: str | None = None,
        destination: str | None = None,
        vm_uuid: str | None = None,
        limit: int = READ_LIMIT,
    ) -> list[MoveSample]:
        """Samples newest first: of this host pair OR of this VM when either is given, else all of them."""
        stmt = select(MoveSampleRow)
        pair = (
            (col(MoveSampleRow.source) == source) & (col(MoveSampleRow.destination) == destination)
            if source is not None and destination is not None
            else None
        )
        vm = col(MoveSampleRow.vm_uuid) == vm_uuid if vm_uuid else None
        if pair is not None and vm is not None:
            stmt = stmt.where(or_(pair, vm))
        elif pair is not None:
            stmt = stmt.where(pair)
        elif vm is not None:
            stmt = stmt.where(vm)
        stmt = stmt.order_by(col(MoveSampleRow.finished_at).desc(), col(MoveSampleRow.id).desc()).limit(limit)

        def read(s: Session) -> list[MoveSample]:
            return [sample_from_row(r) for r in s.exec(stmt).all()]

        return await self._run("read migration samples", lambda _a: self._read(read))
