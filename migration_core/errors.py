"""The one exception tree of the core; every message is written for the operator who reads it.

    MigrateBotError                 base: `message` (what went wrong) + `hint` (what to do)
    ├── RequestError                bad input from a person or a file
    │   ├── GrammarError            the /migrate text could not be parsed
    │   │   └── LimitError          a value is outside its limit's range (migration_core.limits), wherever given
    │   ├── InventoryError          the hosts file is missing, unreadable or wrong
    │   ├── UnknownJobError         no job with that id
    │   ├── UnknownDrainError       no drain with that id
    │   ├── DuplicateRequestError   the idempotency key was used before (Slack retry, double click)
    │   └── SettingsError           an environment variable has a value the bot cannot use (bot.settings)
    ├── PolicyError                 the actor may not do this (not an approver, self-approval, rate limit...)
    │   └── ActiveJobExists         the VM already has an unfinished job
    ├── StateError                  the job's state does not allow this (abort after success...)
    │   ├── IllegalTransition       the job state machine refused a transition
    │   └── DrainStateError         the drain is no longer in the state the caller expected
    ├── PreflightError              the facts for preflight could not be gathered at all
    ├── HypervisorError             libvirt said no (translated once, by error code, in hypervisor.py)
    │   ├── HostUnreachable         a host's libvirt does not answer
    │   ├── DomainNotFound          the VM is not defined on that host
    │   └── JobAborted              the running libvirt job was cancelled
    ├── MigrationError              the migration itself failed or was aborted
    ├── VerificationError           the post-migration checks could not be run
    └── StoreError                  the database is unavailable or refused a write

Every expected failure is one of these classes, defined here and nowhere else, so the tree above is complete.
Expected failures go back to the user as `str(err)`; anything else is a bug, logged with a traceback and
answered with an error reference.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # models imports limits, which imports this module: the type is for annotations only
    from migration_core.models import JobState


class MigrateBotError(Exception):
    """Base of every expected failure; `hint` tells the operator what to do next (may be empty)."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class RequestError(MigrateBotError):
    """Bad input from a person or a file."""


class GrammarError(RequestError):
    """The /migrate text could not be parsed; `hint` shows the right form."""


class LimitError(GrammarError):
    """A value is outside its limit's range (migration_core.limits); `hint` names the range.

    Raised the same by the grammar, the modals, the console and the service's controls. A GrammarError, because
    the value was typed by a person: every front end already answers those as usage errors.
    """


class InventoryError(RequestError):
    """The hosts file is missing, unreadable or wrong; the message names the file, host and field."""


class UnknownJobError(RequestError):
    """No job with that id."""


class DuplicateRequestError(RequestError):
    """The idempotency key was already used: the request was submitted before (Slack retry, double click)."""

    def __init__(self, job_id: int) -> None:
        super().__init__(f"this request was already submitted as job #{job_id}", f"see `status {job_id}`")
        self.job_id = job_id


class SettingsError(RequestError):
    """An environment variable has a value the bot cannot use (raised by bot.settings, the only reader)."""


class PolicyError(MigrateBotError):
    """The actor is not allowed to do this."""


class ActiveJobExists(PolicyError):
    """The VM already has an unfinished job; one migration per VM at a time."""

    def __init__(self, vm: str, job_id: int, state: JobState) -> None:
        super().__init__(
            f"{vm} already has job #{job_id} ({state.value}); one migration per VM at a time",
            f"wait for it to finish, or `cancel {job_id}`",
        )
        self.vm = vm
        self.job_id = job_id
        self.state = state


class StateError(MigrateBotError):
    """The job's current state does not allow this action."""


class IllegalTransition(StateError):
    """The job state machine refused a transition (or another writer moved the job first)."""


class PreflightError(MigrateBotError):
    """The facts needed for preflight could not be gathered at all."""


class HypervisorError(MigrateBotError):
    """libvirt refused or failed; `code` is the libvirt error code when there is one."""

    def __init__(self, message: str, hint: str = "", code: int | None = None) -> None:
        super().__init__(message, hint)
        self.code = code


class HostUnreachable(HypervisorError):
    """A host's libvirt daemon does not answer."""


class DomainNotFound(HypervisorError):
    """The named VM does not exist on that host (libvirt VIR_ERR_NO_DOMAIN)."""


class JobAborted(HypervisorError):
    """The running job was cancelled (by abortJob or by libvirt itself): VIR_ERR_OPERATION_ABORTED."""


class MigrationError(MigrateBotError):
    """The migration failed or was aborted."""


class UnknownDrainError(RequestError):
    """No drain with that id."""


class DrainStateError(StateError):
    """The drain is no longer in the state the caller expected (another writer won, or it is finished)."""


class VerificationError(MigrateBotError):
    """The post-migration checks could not be run."""


class StoreError(MigrateBotError):
    """The database is unavailable or refused a write."""
