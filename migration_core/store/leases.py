"""Store operations for running jobs from two replicas: leases, claims, take-over, per-host slot load."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, true, update
from sqlmodel import Session, col, select

from migration_core.models import Job, JobState
from migration_core.store.base import StoreBase, unknown_job
from migration_core.store.job_ops import ACTIVE
from migration_core.store.schema import JobRow, event_row, row_id
from migration_core.store.states import CLAIMABLE_STATES, SLOT_STATES
from migration_core.store.types import EventKind, HostLimit, HostLoad

_CLAIM_LOCK_KEY = 0x6D62_0002  # PostgreSQL advisory lock: slot counting + claim form one critical section
_CLAIM_WINDOW = 200  # with limits, look at this many queued jobs for one whose hosts have a free slot


def _lease_free(now: datetime) -> Any:
    return or_(col(JobRow.owner).is_(None), col(JobRow.lease_until) < now)


def fits(source: str, destination: str, load: Mapping[str, HostLoad], limits: Mapping[str, HostLimit]) -> bool:
    """Whether a migration source -> destination fits the hosts' free slots (hosts without limits: yes)."""
    src, dst = limits.get(source), limits.get(destination)
    src_busy = load[source].outbound if source in load else 0
    dst_busy = load[destination].inbound if destination in load else 0
    return (src is None or src_busy < src.max_outbound) and (dst is None or dst_busy < dst.max_inbound)


class LeaseOps(StoreBase):
    """Leases: a job is run by exactly one replica; a dead replica's jobs are taken over by another."""

    async def host_load(self) -> dict[str, HostLoad]:
        """Per host, the jobs holding its inbound/outbound slots: running, or claimed to start."""
        return await self._run("count host slots", lambda _a: self._read(self._host_load))

    async def claim_next_runnable(
        self,
        owner: str,
        lease_s: float,
        *,
        states: frozenset[JobState] = CLAIMABLE_STATES,
        limits: Mapping[str, HostLimit] | None = None,
        exclude: frozenset[int] = frozenset(),
    ) -> Job | None:
        """Lease the oldest unowned (or lease-expired) job in `states` to `owner`; None when there is none.

        Jobs in `exclude` are never claimed (the dispatcher holds them: a change freeze, a later start time).

        With `limits`, skip jobs whose source has no free outbound slot or whose destination no free inbound
        slot (hosts missing from `limits` are not limited), so each host's queue drains in order. Two
        replicas never get the same job: PostgreSQL `FOR UPDATE SKIP LOCKED` (and an advisory lock around
        the slot count), SQLite `BEGIN IMMEDIATE`. All replicas must claim the same way (with or without
        limits) for the slot count to hold.
        """

        def claim(_attempt: int) -> Job | None:
            now = self._now()
            with self._tx(write=True) as s:
                if self._is_pg and limits is not None:
                    s.exec(select(func.pg_advisory_xact_lock(_CLAIM_LOCK_KEY)))
                stmt = (
                    select(JobRow)
                    .where(col(JobRow.state).in_([st.value for st in states]), _lease_free(now))
                    .where(col(JobRow.id).not_in(sorted(exclude)) if exclude else true())
                    .order_by(col(JobRow.created_at), col(JobRow.id))
                    .limit(1 if limits is None else _CLAIM_WINDOW)
                )
                if self._is_pg:
                    stmt = stmt.with_for_update(skip_locked=True)
                candidates = list(s.exec(stmt).all())
                if limits is not None:
                    load = self._host_load(s)
                    candidates = [r for r in candidates if fits(r.source, r.destination, load, limits)]
                return self._take(s, candidates[0], owner, lease_s, now) if candidates else None

        return await self._run("claim a job", claim)

    async def take_over(self, job_id: int, owner: str, lease_s: float) -> Job | None:
        """Lease an unfinished job to `owner` if it is unowned, already `owner`'s, or its lease expired.

        None when another replica holds a live lease on it, or the job is finished. UnknownJobError.
        """

        def take(_attempt: int) -> Job | None:
            now = self._now()
            with self._tx(write=True) as s:
                stmt = select(JobRow).where(col(JobRow.id) == job_id)
                row = s.exec(stmt.with_for_update() if self._is_pg else stmt).first()
                if row is None:
                    raise unknown_job(job_id)
                held = row.owner not in (None, owner) and row.lease_until is not None and row.lease_until >= now
                if row.state not in ACTIVE or held:
                    return None
                return self._take(s, row, owner, lease_s, now)

        return await self._run("take over a job", take)

    async def renew_lease(self, job_id: int, owner: str, lease_s: float) -> bool:
        """Extend `owner`'s lease (heartbeat). False: the job is no longer ours, stop working on it."""

        return await self._update_one(
            "renew a lease",
            lambda now: update(JobRow)
            .where(col(JobRow.id) == job_id, col(JobRow.owner) == owner, col(JobRow.state).in_(ACTIVE))
            .values(lease_until=now + timedelta(seconds=lease_s)),
        )

    async def release(self, job_id: int, owner: str) -> bool:
        """Give the job back (clear owner and lease) if `owner` holds it; True when it did."""

        def give_back(_attempt: int) -> bool:
            with self._tx(write=True) as s:
                result = s.exec(
                    update(JobRow)
                    .where(col(JobRow.id) == job_id, col(JobRow.owner) == owner)
                    .values(owner=None, lease_until=None)
                )
                if result.rowcount != 1:
                    return False
                s.add(event_row(job_id, EventKind.LEASE, self._now(), owner, f"released by {owner}"))
                return True

        return await self._run("release a lease", give_back)

    async def expired_leases(self) -> list[Job]:
        """Unfinished jobs whose owner stopped renewing (its replica died): candidates for take_over."""
        stmt = select(JobRow).where(
            col(JobRow.state).in_(ACTIVE),
            col(JobRow.owner).is_not(None),
            col(JobRow.lease_until) < self._now(),
        )
        return await self._all("read expired leases", stmt.order_by(col(JobRow.created_at), col(JobRow.id)))

    async def jobs_owned_by(self, owner: str) -> list[Job]:
        """Unfinished jobs leased to `owner` (what this replica resumes after its own restart)."""
        stmt = select(JobRow).where(col(JobRow.state).in_(ACTIVE), col(JobRow.owner) == owner)
        return await self._all("read owned jobs", stmt.order_by(col(JobRow.created_at), col(JobRow.id)))

    def _host_load(self, s: Session) -> dict[str, HostLoad]:
        claimed = col(JobRow.state).in_([st.value for st in CLAIMABLE_STATES]) & col(JobRow.owner).is_not(None)
        stmt = (
            select(col(JobRow.id), col(JobRow.source), col(JobRow.destination))
            .where(or_(col(JobRow.state).in_([st.value for st in SLOT_STATES]), claimed))
            .order_by(col(JobRow.created_at), col(JobRow.id))
        )
        inbound: dict[str, list[int]] = {}
        outbound: dict[str, list[int]] = {}
        for found_id, source, destination in s.exec(stmt).all():
            job_id = int(found_id or 0)  # never None: it is the primary key
            outbound.setdefault(source, []).append(job_id)
            inbound.setdefault(destination, []).append(job_id)
        hosts = sorted({*inbound, *outbound})
        return {h: HostLoad(h, tuple(inbound.get(h, ())), tuple(outbound.get(h, ()))) for h in hosts}

    def _take(self, s: Session, row: JobRow, owner: str, lease_s: float, now: datetime) -> Job:
        before, job_id = row.owner, row_id(row)
        s.exec(
            update(JobRow)
            .where(col(JobRow.id) == job_id)
            .values(owner=owner, lease_until=now + timedelta(seconds=lease_s))
        )
        if before is None:
            detail = f"claimed by {owner}"
        elif before == owner:
            detail = f"resumed by {owner}"
        else:
            detail = f"taken over by {owner} from {before} (its lease ended {row.lease_until:%H:%M:%S} UTC)"
        s.add(event_row(job_id, EventKind.LEASE, now, owner, detail, {"previous_owner": before} if before else {}))
        return self._load_job(s, job_id)
