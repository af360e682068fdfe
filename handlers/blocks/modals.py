"""Modals for control values (raise max downtime, set bandwidth) and their pure input validation."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from handlers.blocks.fmt import cut, fmt_ms
from migration_core.errors import RequestError
from migration_core.grammar.values import parse_duration_s, parse_rate_mib_s
from migration_core.limits import BANDWIDTH_MIB_S, MAX_DOWNTIME_MS
from migration_core.models import Job

DOWNTIME_CALLBACK = "set_downtime"
BANDWIDTH_CALLBACK = "set_bandwidth"
VALUE_BLOCK = "value"
VALUE_ACTION = "value_input"


@dataclass(frozen=True)
class ModalTarget:
    """What a modal acts on, carried in `private_metadata` (only ids; authority is checked again)."""

    job_id: int
    channel: str | None = None
    thread: str | None = None

    def dump(self) -> str:
        return json.dumps({"job": self.job_id, "channel": self.channel, "thread": self.thread})

    @staticmethod
    def load(text: str) -> ModalTarget:
        """Raise ValueError on anything but what `dump` wrote (the metadata comes back from the client)."""
        data = json.loads(text or "{}")
        job = data.get("job") if isinstance(data, dict) else None
        if not isinstance(job, int) or job < 1:
            raise ValueError("modal metadata has no job id")
        channel = data.get("channel")
        thread = data.get("thread")
        return ModalTarget(
            job, channel if isinstance(channel, str) else None, thread if isinstance(thread, str) else None
        )


def parse_downtime_ms(text: str | None) -> int:
    """'500' (ms), '500ms', '1.5s' -> whole milliseconds.

    Raises RequestError with the operator's message otherwise: GrammarError for text that is no duration,
    LimitError (limits.MAX_DOWNTIME_MS, as the grammar and the service) for one out of range.
    """
    text = (text or "").strip()
    if not text:
        raise RequestError("enter a max downtime, e.g. 500 (milliseconds) or 1.5s")
    ms = parse_duration_s(text, "max downtime", bare_unit_s=0.001) * 1000
    return round(MAX_DOWNTIME_MS.check(ms, "max downtime", text))


def parse_bandwidth_mib_s(text: str | None) -> int:
    """'200' (MiB/s), '200M', '1G' -> whole MiB/s; RequestError as `parse_downtime_ms` otherwise
    (limits.BANDWIDTH_MIB_S)."""
    text = (text or "").strip()
    if not text:
        raise RequestError("enter a bandwidth in MiB/s, e.g. 200 or 1G")
    return BANDWIDTH_MIB_S.check(parse_rate_mib_s(text, "bandwidth"), "bandwidth", text)


def _modal(
    callback_id: str, title: str, target: ModalTarget, intro: str, label: str, hint: str
) -> dict[str, Any]:
    return {
        "type": "modal",
        "callback_id": callback_id,
        "private_metadata": target.dump(),
        "title": {"type": "plain_text", "text": title},
        "submit": {"type": "plain_text", "text": "Apply"},
        "close": {"type": "plain_text", "text": "Cancel"},
        "blocks": [
            {"type": "section", "block_id": "intro", "text": {"type": "mrkdwn", "text": cut(intro, 2900)}},
            {
                "type": "input",
                "block_id": VALUE_BLOCK,
                "label": {"type": "plain_text", "text": label},
                "hint": {"type": "plain_text", "text": hint},
                "element": {"type": "plain_text_input", "action_id": VALUE_ACTION},
            },
        ],
    }


def downtime_modal(job: Job, target: ModalTarget, current_ms: int | None = None) -> dict[str, Any]:
    """Ask for a new max downtime; shows the approved one."""
    now = fmt_ms(
        current_ms if current_ms is not None else (job.plan.policy.max_downtime_ms if job.plan else None)
    )
    intro = (
        f"Job #{job.id}: migrating *{job.vm}* to *{job.destination}*. Current max downtime: *{now}*.\n"
        "A larger value lets pre-copy finish sooner but pauses the VM longer at the switch-over."
    )
    return _modal(
        DOWNTIME_CALLBACK,
        "Raise max downtime",
        target,
        intro,
        "New max downtime",
        "e.g. 500 (ms), 800ms, 1.5s",
    )


def bandwidth_modal(job: Job, target: ModalTarget) -> dict[str, Any]:
    """Ask for a new bandwidth cap for the migration stream."""
    intro = (
        f"Job #{job.id}: migrating *{job.vm}* to *{job.destination}*.\n"
        "The migration stream is capped at this rate: lower it to protect other traffic, "
        "raise it to converge."
    )
    return _modal(
        BANDWIDTH_CALLBACK, "Set bandwidth", target, intro, "Bandwidth (MiB/s)", "e.g. 200, 500M, 1G"
    )
