"""The schedules part of :class:`~jobline.client.Client`: create, read, list, change, pause,
resume, delete; planned fire times and the jobs a schedule created."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

from jobline.api.schedules import (
    NextFires,
    ScheduledJobOut,
    ScheduledJobPage,
    ScheduleIn,
    ScheduleOut,
    SchedulePage,
    SchedulePatch,
)
from jobline.client import _calls as calls
from jobline.client import pagination
from jobline.client._calls import Id
from jobline.client._sync_base import SyncBase


class SyncSchedules(SyncBase):
    """Schedules (see :class:`~jobline.client.Client`)."""

    def create_schedule(self, schedule: ScheduleIn | Mapping[str, Any]) -> ScheduleOut:
        """Create a schedule (exactly one of cron or interval_seconds)."""
        return self._run(calls.create_schedule(schedule))

    def list_schedules(
        self, *, name: str | None = None, limit: int | None = None, cursor: str | None = None
    ) -> SchedulePage:
        """One page of the tenant's schedules, by name."""
        return self._run(calls.list_schedules(name=name, limit=limit, cursor=cursor))

    def iter_schedules(
        self, *, name: str | None = None, page_size: int | None = None
    ) -> Iterator[ScheduleOut]:
        """Every schedule of the tenant, by name."""

        def fetch(cursor: str | None) -> SchedulePage:
            return self.list_schedules(name=name, limit=page_size, cursor=cursor)

        return pagination.iterate(fetch, lambda page: page.schedules)

    def get_schedule(self, schedule_id: Id) -> ScheduleOut:
        """A schedule by id."""
        return self._run(calls.get_schedule(schedule_id))

    def find_schedule(self, id_or_name: Id) -> ScheduleOut:
        """A schedule by id, or else by name (names are unique per tenant)."""
        if calls.is_uuid(id_or_name):
            return self.get_schedule(id_or_name)
        for schedule in self.iter_schedules(name=str(id_or_name)):
            return schedule
        raise calls.no_schedule(id_or_name)

    def update_schedule(
        self, schedule_id: Id, changes: SchedulePatch | Mapping[str, Any]
    ) -> ScheduleOut:
        """Change a schedule; a new timing is planned afresh from now."""
        return self._run(calls.update_schedule(schedule_id, changes))

    def pause_schedule(self, schedule_id: Id) -> ScheduleOut:
        """Stop firing (its pending fire time is kept for resume)."""
        return self._run(calls.pause_schedule(schedule_id))

    def resume_schedule(self, schedule_id: Id) -> ScheduleOut:
        """Fire again from now; missed times run as the misfire policy says."""
        return self._run(calls.resume_schedule(schedule_id))

    def delete_schedule(self, schedule_id: Id) -> None:
        """Delete a schedule; the jobs it created stay."""
        self._run(calls.delete_schedule(schedule_id))

    def next_fires(
        self, schedule_id: Id, count: int | None = None, after: datetime | str | None = None
    ) -> NextFires:
        """The next planned fire times, in the schedule's zone and in UTC."""
        return self._run(calls.next_fires(schedule_id, count=count, after=after))

    def schedule_jobs(
        self, schedule_id: Id, *, limit: int | None = None, cursor: str | None = None
    ) -> ScheduledJobPage:
        """One page of the jobs a schedule created, newest fire time first."""
        return self._run(calls.schedule_jobs(schedule_id, limit=limit, cursor=cursor))

    def iter_schedule_jobs(
        self, schedule_id: Id, *, page_size: int | None = None
    ) -> Iterator[ScheduledJobOut]:
        """Every job a schedule created, newest fire time first."""

        def fetch(cursor: str | None) -> ScheduledJobPage:
            return self.schedule_jobs(schedule_id, limit=page_size, cursor=cursor)

        return pagination.iterate(fetch, lambda page: page.jobs)
