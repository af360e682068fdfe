"""Test driver: runs the fake Slack as a subprocess and talks to its control API and to apps."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from .apps import AppDrivers
from .store import default_bot

REPO_ROOT = Path(__file__).resolve().parents[2]


class WaitTimeout(AssertionError):
    """wait_for gave up: the condition never became true."""


class FakeSlackError(RuntimeError):
    """The fake's control API refused a request (bad test set-up), or the process did not start."""


async def wait_for(predicate: Callable[[], Any], timeout_s: float = 10.0, interval_s: float = 0.05,
                   what: str | None = None) -> Any:
    """Poll `predicate` (sync or async) until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"gave up after {timeout_s} s waiting for {what or predicate!r}")
        await asyncio.sleep(interval_s)


class FakeSlack(AppDrivers):
    """A running fake Slack process (127.0.0.1 only). Start with FakeSlack.start(); close() stops it."""

    def __init__(self, port: int, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.port = port
        self.process = process
        self.log_path = log_path
        bot = default_bot()
        self.bot_token: str = bot["token"]
        self.app_token: str = bot["app_token"]

    # ---- process ---------------------------------------------------------------------------------
    @classmethod
    def start(cls, *, startup_timeout_s: float = 20.0, log_path: Path | None = None) -> FakeSlack:
        log_path = log_path or Path(tempfile.mkstemp(prefix="fakeslack-", suffix=".log")[1])
        log = log_path.open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakeslack", "--port", "0", "--exit-with-parent"],
            cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        line: list[bytes] = []
        reader = threading.Thread(target=lambda: line.append(process.stdout.readline()),  # type: ignore[union-attr]
                                  daemon=True)
        reader.start()
        reader.join(startup_timeout_s)
        text = line[0].decode().strip() if line else ""
        if not text.startswith("PORT="):
            process.kill()
            process.wait()
            raise FakeSlackError(f"the fake Slack did not start (first line {text!r}); see {log_path}")
        return cls(int(text.removeprefix("PORT=")), process, log_path)

    def close(self) -> None:
        """Stop the process this driver started (by its PID), politely first."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> FakeSlack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_base_url(self) -> str:
        """What the bot's AsyncWebClient takes as base_url (the trailing / is required)."""
        return f"{self.base_url}/api/"

    def env(self, signing_secret: str | None = None) -> dict[str, str]:
        """Environment for a bot process pointed at this fake (variable names of issue 6)."""
        env = {"SLACK_API_URL": self.api_base_url, "SLACK_BOT_TOKEN": self.bot_token,
               "SLACK_APP_TOKEN": self.app_token}
        if signing_secret is not None:
            env["SLACK_SIGNING_SECRET"] = signing_secret
        return env

    # ---- control API transport ---------------------------------------------------------------------
    async def _request(self, method: str, path: str, *, body: dict[str, Any] | None = None,
                       query: dict[str, Any] | None = None) -> dict[str, Any]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session, session.request(
                method, self.base_url + path, json=body, params=query) as resp:
            data = await resp.json()
        if not data.get("ok"):
            raise FakeSlackError(f"{method} {path}: {data.get('error')}")
        data.pop("ok")
        return dict(data)

    async def _get(self, path: str, **query: Any) -> dict[str, Any]:
        return await self._request("GET", path, query={k: str(v) for k, v in query.items()})

    async def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return await self._request("POST", path, body=body or {})

    def _post_sync(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """Blocking variant for fixtures that run outside an event loop."""
        req = urllib.request.Request(self.base_url + path, data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                data = json.loads(resp.read())
        except urllib.error.HTTPError as e:
            data = json.loads(e.read())
        if not data.get("ok"):
            raise FakeSlackError(f"POST {path}: {data.get('error')}")
        return dict(data)

    def _note_tokens(self, workspace: dict[str, Any]) -> None:
        bot = workspace.get("bot") or {}
        self.bot_token = bot.get("token", self.bot_token)
        self.app_token = bot.get("app_token", self.app_token)

    # ---- set-up ----------------------------------------------------------------------------------
    async def seed(self, workspace: dict[str, Any] | None = None, **parts: Any) -> None:
        """Define the workspace: team, plan ("free"|"paid"), bot, scopes, users, channels, usergroups."""
        body = {**(workspace or {}), **parts}
        await self._post("/_test/seed", body)
        self._note_tokens(body)

    def seed_sync(self, workspace: dict[str, Any] | None = None, **parts: Any) -> None:
        body = {**(workspace or {}), **parts}
        self._post_sync("/_test/seed", body)
        self._note_tokens(body)

    async def reset(self) -> None:
        """Forget everything (workspace, messages, records) and close Socket Mode connections."""
        await self._post("/_test/reset")
        self.bot_token, self.app_token = default_bot()["token"], default_bot()["app_token"]

    def reset_sync(self) -> None:
        self._post_sync("/_test/reset", {})
        self.bot_token, self.app_token = default_bot()["token"], default_bot()["app_token"]

    async def inject(self, method: str, *, count: int = 1, mode: str = "429", retry_after_s: int = 1) -> None:
        """The next `count` calls of `method` ("*" = any) fail: mode "429" | "500" | "503" | "drop"."""
        await self._post("/_test/inject", {"method": method, "count": count, "mode": str(mode),
                                           "retry_after_s": retry_after_s})

    async def clear_injections(self) -> None:
        await self._post("/_test/inject", {"clear": True, "method": "*"})

    async def set_rate_limits(self, enabled: bool = True, limits: dict[str, int] | None = None) -> None:
        """Slack-like limits (§11.2) on the fake clock; `limits` overrides calls/minute per method."""
        await self._post("/_test/rate_limits", {"enabled": enabled, "limits": limits or {}})

    async def advance_clock(self, seconds: float) -> float:
        return float((await self._post("/_test/clock", {"advance_s": seconds}))["now"])

    async def set_clock(self, epoch_s: float, *, freeze: bool = False) -> float:
        return float((await self._post("/_test/clock", {"set": epoch_s, "freeze": freeze}))["now"])

    async def now(self) -> float:
        return float((await self._post("/_test/clock", {}))["now"])

    async def mint_trigger(self, user_id: str | None = None, view_id: str | None = None) -> str:
        return str((await self._post("/_test/trigger", {"user": user_id, "view_id": view_id}))["trigger_id"])

    async def mint_response_url(self, channel: str | None = None, user_id: str | None = None,
                                message_ts: str | None = None, is_ephemeral: bool = False) -> str:
        body = {"channel": channel, "user": user_id, "message_ts": message_ts, "is_ephemeral": is_ephemeral}
        return str((await self._post("/_test/response_url", body))["url"])

    async def post_as_user(self, channel: str, user_id: str, text: str, *, thread_ts: str | None = None,
                           blocks: list[Any] | None = None) -> str:
        """A person posts a message (one the bot does not own); returns its ts."""
        body = {"channel": channel, "user": user_id, "text": text, "thread_ts": thread_ts, "blocks": blocks}
        return str((await self._post("/_test/user_message", body))["ts"])

    async def disconnect_socket(self, reason: str = "refresh_requested", *, close: bool = False,
                                frame: bool = True, connection_id: str | None = None) -> list[str]:
        """Send Socket Mode `disconnect` frames (and/or close sockets); returns the connection ids hit."""
        body = {"reason": reason, "close": close, "frame": frame, "connection_id": connection_id}
        return list((await self._post("/_test/disconnect", body))["connections"])

    # ---- inspection ------------------------------------------------------------------------------
    async def state(self) -> dict[str, Any]:
        return await self._get("/_test/state")

    async def calls(self, method: str | None = None) -> list[dict[str, Any]]:
        """Every Web API call, oldest first: {method, args, token, t, http_method, ok, error, injected?}."""
        query = {"method": method} if method else {}
        return list((await self._get("/_test/calls", **query))["calls"])

    async def messages(self, channel: str, *, include_replies: bool = False) -> list[dict[str, Any]]:
        """The channel as a person sees it (top level + broadcast replies), oldest first."""
        query = {"channel": channel, "include_replies": "1" if include_replies else "0"}
        return list((await self._get("/_test/messages", **query))["messages"])

    async def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The thread's root and its replies in ts order."""
        return list((await self._get("/_test/messages", channel=channel, thread_ts=ts))["messages"])

    async def message(self, channel: str, ts: str) -> dict[str, Any]:
        return dict((await self._get("/_test/message", channel=channel, ts=ts))["message"])

    async def ephemerals(self, channel: str | None = None,
                         user_id: str | None = None) -> list[dict[str, Any]]:
        query = {k: v for k, v in (("channel", channel), ("user", user_id)) if v}
        return list((await self._get("/_test/ephemerals", **query))["ephemerals"])

    async def response_posts(self) -> list[dict[str, Any]]:
        return list((await self.state())["response_posts"])

    async def views(self, user_id: str | None = None) -> list[dict[str, Any]]:
        return [v for v in (await self.state())["views"] if user_id in (None, v["user"])]

    async def view(self, view_id: str) -> dict[str, Any]:
        return await self._get("/_test/view", id=view_id)

    async def home_view(self, user_id: str) -> dict[str, Any] | None:
        view = (await self.state())["home_views"].get(user_id)
        return dict(view) if view is not None else None

    async def acks(self) -> list[dict[str, Any]]:
        return list((await self.state())["acks"])

    async def ack_failures(self) -> list[dict[str, Any]]:
        return list((await self.state())["ack_failures"])

    async def connections(self) -> list[dict[str, Any]]:
        return list((await self.state())["connections"])

    async def wait_for(self, predicate: Callable[[], Any], timeout_s: float = 10.0,
                       interval_s: float = 0.05, what: str | None = None) -> Any:
        return await wait_for(predicate, timeout_s, interval_s, what)
