"""Running commands with deadlines, progress output, and finding/killing the lab's own processes."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path


class LabError(Exception):
    """Something the operator must fix; the message says what went wrong and what to do."""


_T0 = time.monotonic()


def say(message: str) -> None:
    """Progress on stdout (scripts take the last stdout line, so everything goes to one stream)."""
    print(f"[lab {time.monotonic() - _T0:5.1f}s] {message}", flush=True)


def warn(message: str) -> None:
    print(f"[lab] warning: {message}", file=sys.stderr, flush=True)


def run(
    argv: Sequence[str],
    *,
    timeout_s: float = 60,
    check: bool = True,
    input_text: str | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a command with a deadline; on failure raise LabError naming the command and its stderr."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            input=input_text,
            env=env,
            stdin=None if input_text is not None else subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"`{' '.join(argv)}` did not finish within {timeout_s:g} s") from exc
    except FileNotFoundError as exc:
        raise LabError(f"`{argv[0]}` is not installed (run `lab up` as root to install packages)") from exc
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip()
        raise LabError(f"`{' '.join(argv)}` failed (exit {proc.returncode}): {detail}")
    return proc


def read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def proc_comm(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def ns_id(pid: int | str, kind: str) -> str:
    """The namespace id of a process, e.g. 'mnt:[4026532301]'; '' when the process is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/{kind}")
    except OSError:
        return ""


def netns_id(name: str) -> str:
    """The id of a named network namespace, in the same form ns_id() returns ('' if there is none)."""
    try:
        return f"net:[{os.stat(f'/run/netns/{name}').st_ino}]"
    except OSError:
        return ""


def pids_in_namespace(ns: str) -> list[int]:
    """Every process whose mount or network namespace is `ns` ('mnt:[..]' / 'net:[..]').

    The root namespaces never match a lab id, so this can only find what the lab started (the daemon,
    its QEMUs, the NBD server, or a command a test ran inside a lab host)."""
    if not ns:
        return []
    kind = ns.split(":", 1)[0]
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) not in (1, me) and ns_id(entry, kind) == ns:
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def wait_gone(pids: Iterable[int], deadline_s: float) -> list[int]:
    """Wait (bounded) for processes to exit; return those still alive."""
    left = [p for p in pids if alive(p)]
    end = time.monotonic() + deadline_s
    while left and time.monotonic() < end:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left


def terminate(pids: Sequence[int], grace_s: float = 5.0) -> None:
    """SIGTERM, wait up to grace_s, then SIGKILL what is left. Only ever called with the lab's own PIDs."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    for pid in wait_gone(pids, grace_s):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_gone(pids, 2.0)
