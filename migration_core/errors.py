"""The one exception tree of the core; every message is written for the operator who reads it.

    MigrateBotError                 base: `message` (what went wrong) + `hint` (what to do)
    ├── RequestError                bad input from a person or a file
    │   ├── GrammarError            the /migrate text could not be parsed
    │   │   └── LimitError          a value is outside its limit's range (migration_core.limits), wherever given
    │   ├── InventoryError          the hosts file is missing, unreadable or wrong
    │   └── UnknownJobError         no job with that id
    ├── PolicyError                 the actor may not do this (not an approver, self-approval, rate limit...)
    ├── StateError                  the job's state does not allow this (abort after success...)
    │   └── IllegalTransition       the job state machine refused a transition
    ├── PreflightError              the facts for preflight could not be gathered at all
    ├── HypervisorError             libvirt said no (translated once, by error code, in hypervisor.py)
    │   └── HostUnreachable         a host's libvirt does not answer
    ├── MigrationError              the migration itself failed or was aborted
    ├── VerificationError           the post-migration checks could not be run
    └── StoreError                  the database is unavailable or refused a write

Expected failures go back to the user as `str(err)`; anything else is a bug, logged with a traceback and
answered with an error reference.
"""

from __future__ import annotations


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


class PolicyError(MigrateBotError):
    """The actor is not allowed to do this."""


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


class MigrationError(MigrateBotError):
    """The migration failed or was aborted."""


class VerificationError(MigrateBotError):
    """The post-migration checks could not be run."""


class StoreError(MigrateBotError):
    """The database is unavailable or refused a write."""
