"""deploy/manifest.yaml asks for exactly the scopes the code uses; Socket Mode, App Home and /migrate."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = (ROOT / "deploy" / "manifest.yaml").read_text()

# Web API methods -> the bot scope each needs (views.* need none).
SCOPE_OF = {
    "chat_postMessage": "chat:write",
    "chat_update": "chat:write",
    "chat_postEphemeral": "chat:write",
    "usergroups_list": "usergroups:read",
    "usergroups_users_list": "usergroups:read",
    "views_open": None,
    "views_publish": None,
    "auth_test": None,  # no scope: binds the workspace at start (handlers.gate)
}


def _active_lines(text: str) -> list[str]:
    return [line.split("#", 1)[0].rstrip() for line in text.splitlines() if line.split("#", 1)[0].strip()]


def _bot_scopes() -> set[str]:
    lines = _active_lines(MANIFEST)
    start = lines.index("    bot:")
    scopes = set()
    for line in lines[start + 1 :]:
        m = re.fullmatch(r"      - ([a-z:.]+)", line)
        if not m:
            break
        scopes.add(m.group(1))
    return scopes


def _methods_called() -> set[str]:
    called = set()
    for path in [*ROOT.glob("handlers/*.py"), *ROOT.glob("bot/*.py")]:
        called |= set(re.findall(r"\b(?:client|_client)\.([a-z]+_[A-Za-z_]+)\(", path.read_text()))
    return called


def test_every_called_method_is_known_and_its_scope_requested():
    called = _methods_called()
    assert called, "expected to find Web API calls"
    unknown = called - set(SCOPE_OF)
    assert not unknown, f"add the scope of {unknown} to SCOPE_OF and the manifest"
    needed = {"commands"} | {SCOPE_OF[m] for m in called if SCOPE_OF[m]}
    assert _bot_scopes() == needed


def test_socket_mode_home_interactivity_and_command():
    active = "\n".join(_active_lines(MANIFEST))
    assert "socket_mode_enabled: true" in active
    assert "home_tab_enabled: true" in active and "- app_home_opened" in active
    assert "interactivity:\n    is_enabled: true" in active
    assert "- command: /migrate" in active and "name: migrate-bot" in active
    assert "url:" not in active  # Socket Mode: no request URLs
