"""A real `migrate-bot serve` process in HTTP mode for tests and benchmarks: start, probe, read its log, stop.

The process gets a clean environment (no MIGRATE_BOT_* / SLACK_* leaking in from the caller), listens on
127.0.0.1 on free ports, writes its log (stderr) to a file the tests read, and is stopped by its own PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
_OUR_PREFIXES = ("MIGRATE_BOT_", "SLACK_")


def free_port() -> int:
    """A TCP port nobody listens on right now (the bot binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def unreachable_inventory(directory: Path, hosts: tuple[str, ...] = ("hostA", "hostB")) -> Path:
    """A hosts file whose hosts are unix sockets that do not exist: every libvirt connection fails at once,
    so no migration can ever start (fuzzing and security tests that must not touch a hypervisor)."""
    lines = ["[defaults]", "max_inbound = 1", "max_outbound = 1", ""]
    for name in hosts:
        sock = directory / f"no-libvirt-{name}.sock"
        lines += [f"[hosts.{name}]", f'uri = "qemu+unix:///system?socket={sock}"', ""]
    path = directory / "hosts.toml"
    path.write_text("\n".join(lines))
    return path


def _clean_environ() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(_OUR_PREFIXES)}


def _bot_command() -> list[str]:
    script = Path(sys.executable).parent / "migrate-bot"
    return [str(script), "serve"] if script.exists() else [sys.executable, "-m", "bot.cli", "serve"]


def http_get(url: str, timeout_s: float = 10.0) -> tuple[int, str]:
    """(status, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as resp:
            return int(resp.status), resp.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()


@dataclass
class BotProcess:
    """One running bot. `url` is the Slack endpoint's base (http://127.0.0.1:PORT)."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path
    env: dict[str, str]
    metrics_port: int | None = None
    _stopped: bool = field(default=False, repr=False)

    @classmethod
    def start(
        cls,
        env: dict[str, str],
        log_path: Path,
        *,
        metrics: bool = False,
        wait: bool = True,
        timeout_s: float = 60.0,
        nofile: int | None = None,
    ) -> BotProcess:
        """Start `migrate-bot serve` (HTTP mode) with `env` on top of a clean environment; `nofile` lowers its
        open-files limit (soft and hard), as a small LimitNOFILE would."""
        port = free_port()
        metrics_port = free_port() if metrics else None
        full = {
            **_clean_environ(),
            "MIGRATE_BOT_MODE": "http",
            "MIGRATE_BOT_PORT": str(port),
            "MIGRATE_BOT_BIND": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
            **({"MIGRATE_BOT_METRICS_PORT": str(metrics_port)} if metrics_port else {}),
            **env,
        }
        log = log_path.open("ab")
        process = subprocess.Popen(
            _bot_command(),
            cwd=REPO_ROOT,
            env=full,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            preexec_fn=(lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))) if nofile else None,
        )
        log.close()
        bot = cls(process, port, log_path, full, metrics_port)
        if wait:
            bot.wait_ready(timeout_s)
        return bot

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics_url(self) -> str:
        assert self.metrics_port is not None, "start the bot with metrics=True"
        return f"http://127.0.0.1:{self.metrics_port}"

    def alive(self) -> bool:
        return self.process.poll() is None

    def rss_kib(self) -> int:
        """The process's resident memory (VmRSS), in KiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS in /proc/PID/status")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Until /healthz answers at all (200 or 503): the listener is up. Fails with the log if it died."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise AssertionError(f"the bot exited with {self.process.returncode}:\n{self.log_text()}")
            with contextlib.suppress(OSError):
                http_get(self.url + "/healthz", timeout_s=5)
                return
            time.sleep(0.1)
        self.stop()
        raise AssertionError(f"the bot did not listen within {timeout_s} s:\n{self.log_text()}")

    def health(self) -> tuple[int, dict[str, object]]:
        status, body = http_get(self.url + "/healthz", timeout_s=30)
        return status, json.loads(body)

    def wait_exit(self, timeout_s: float = 30.0) -> int:
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> int | None:
        """SIGTERM (a clean shutdown), then SIGKILL after 15 s; only this process, by its PID."""
        if self._stopped:
            return self.process.returncode
        self._stopped = True
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self) -> BotProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
