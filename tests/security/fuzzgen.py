"""Fuzz cases for the Slack endpoint (pure, seeded): `/migrate` texts and malformed Slack requests.

`cases(n, seed, base)` yields `Case`s: the raw body bytes, the Content-Type, the category, and whether the
request is a well-formed slash command (those must be answered 200, never refused). `base` holds real payloads
(slash command fields, a block_actions click, a view_submission, an event) built from the fake Slack's
context, so mutations start from what Slack really sends. Every case is signed by the runner, so it reaches
the gate and the handlers: the point is to find what crashes them, not what the signature check stops.

Texts never name a reachable host (the fuzz bot's inventory only has unreachable sockets), response URLs
stay on the fake Slack or are plain garbage: no fuzz case can make the bot send traffic elsewhere.
"""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from tests.security.fuzztext import migrate_text, random_unicode

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


@dataclass(frozen=True)
class Case:
    """One request to send."""

    category: str
    body: bytes
    content_type: str | None
    well_formed_command: bool = False


@dataclass
class Base:
    """Real payloads to mutate; `fresh_response_url()` is filled in per case by the runner."""

    slash: dict[str, str]
    click: dict[str, Any]
    view: dict[str, Any]
    event: dict[str, Any]


RESPONSE_URL_PLACEHOLDER = "__RESPONSE_URL__"


def _slash(base: Base, text: str, rng: random.Random) -> Case:
    fields = dict(base.slash, text=text, trigger_id=f"{rng.randint(1, 10**9)}.{rng.randint(1, 10**9)}.fuzz")
    return Case("migrate_text", urlencode(fields).encode(), FORM, well_formed_command=True)


def _leaves(obj: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _leaves(v, (*path, i))


def _set(obj: Any, path: tuple[Any, ...], value: Any, delete: bool = False) -> Any:
    if not path:
        return value
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return obj


_WRONG = [None, 0, -1, 2**70, 1.5, True, False, "", "x", [], [1, 2], {}, {"id": 5}, "∞", [None], {"a": [{}]}]


def _wrong_type(rng: random.Random, payload: dict[str, Any]) -> dict[str, Any]:
    p = copy.deepcopy(payload)
    paths = [path for path in _leaves(p) if path]
    for _ in range(rng.randint(1, 3)):
        paths = [path for path in _leaves(p) if path]
        p = _set(p, rng.choice(paths), copy.deepcopy(rng.choice(_WRONG)))
    return p


def _missing(rng: random.Random, payload: dict[str, Any]) -> dict[str, Any]:
    p = copy.deepcopy(payload)
    for _ in range(rng.randint(1, 4)):
        paths = [path for path in _leaves(p) if path]
        if not paths:
            break
        p = _set(p, rng.choice(paths), None, delete=True)
    return p


def _oversized(rng: random.Random, payload: dict[str, Any]) -> dict[str, Any]:
    p = copy.deepcopy(payload)
    strings = [path for path in _leaves(p) if path and isinstance(_get(p, path), str)]
    big = rng.choice(["A", "9", "é", "\u202e", "<@U_BOB>"]) * rng.choice([3000, 50_000, 200_000])
    return _set(p, rng.choice(strings), big) if strings else p


def _get(obj: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        obj = obj[key]
    return obj


def _interactive(payload: Any) -> bytes:
    return ("payload=" + quote(json.dumps(payload))).encode()


def _unknown_action(rng: random.Random, click: dict[str, Any]) -> dict[str, Any]:
    p = copy.deepcopy(click)
    action = p["actions"][0]
    action["action_id"] = rng.choice(
        ["approve_all", "delete", "", "APPROVE", "approve ", "abort\x00", "../x", random_unicode(rng, 30), "x" * 255]
    )
    if rng.random() < 0.5:
        job = rng.choice(["1", "2", "999999", "0", "-1", "1e3", "abc", "9" * 19, ""])
        action["value"] = job
        action["block_id"] = rng.choice([f"approval:{job}", f"controls:{job}", "approval:", "x"])
    return p


def _forged_click(rng: random.Random, click: dict[str, Any]) -> dict[str, Any]:
    """Real action ids with job ids the clicker has no rights on, that do not exist, or that disagree."""
    p = copy.deepcopy(click)
    action = p["actions"][0]
    action["action_id"] = rng.choice(["approve", "deny", "abort", "postcopy", "downtime", "bandwidth"])
    job = str(rng.choice([1, 2, 3, 5, 10, 999_999, 10**18 - 1]))
    action["block_id"] = rng.choice([f"approval:{job}", f"controls:{job}"])
    action["value"] = job if rng.random() < 0.7 else str(rng.randint(1, 50))
    p["user"]["id"] = rng.choice(["U_MALLORY", "U_ALICE", "U_BOB", "U_NOBODY", "W123"])
    return p


def _view(rng: random.Random, view: dict[str, Any]) -> dict[str, Any]:
    p = copy.deepcopy(view)
    v = p["view"]
    v["callback_id"] = rng.choice(["set_downtime", "set_bandwidth", "nope", "", "set_downtime" * 50])
    v["private_metadata"] = rng.choice(
        [
            '{"job": 1}',
            '{"job": "x"}',
            "",
            "{",
            "[]",
            "null",
            "x" * 5000,
            json.dumps({"job": 10**30, "channel": 5}),
            '{"job": 2, "channel": null}',
        ]
    )
    return _wrong_type(rng, p) if rng.random() < 0.3 else p


def _content_type_case(rng: random.Random, base: Base) -> Case:
    bodies = [
        (urlencode(base.slash).encode(), rng.choice([JSON, "text/plain", "multipart/form-data", None, "", "x/y"])),
        (json.dumps(base.event).encode(), rng.choice([FORM, "text/plain", None, "application/json; charset=latin1"])),
        (_interactive(base.click), rng.choice([JSON, "text/html", None])),
    ]
    body, ctype = rng.choice(bodies)
    return Case("wrong_content_type", body, ctype)


def _bad_json(rng: random.Random, base: Base) -> Case:
    text = json.dumps(rng.choice([base.click, base.view]))
    choice = rng.randrange(6)
    if choice == 0:
        bad = text[: rng.randint(0, len(text) - 1)]
    elif choice == 1:
        bad = text.replace('"', "'", rng.randint(1, 5))
    elif choice == 2:
        bad = "{" * rng.randint(1, 100_000)
    elif choice == 3:
        bad = "[" * 50_000 + "]" * 50_000
    elif choice == 4:
        bad = rng.choice(["[]", "1", '"x"', "null", "true", "[{}]", "1e999", "9" * 5000])
    else:
        bad = random_unicode(rng, 200)
    if rng.random() < 0.6:
        return Case("bad_json", ("payload=" + quote(bad)).encode(), FORM)
    return Case("bad_json", bad.encode(), rng.choice([JSON, FORM]))


def _raw_case(rng: random.Random, base: Base) -> Case:
    choice = rng.randrange(5)
    if choice == 0:
        return Case("empty_body", b"", rng.choice([FORM, JSON, None]))
    if choice == 1:
        return Case("not_utf8", bytes(rng.randrange(256) for _ in range(rng.randint(1, 200))), FORM)
    if choice == 2:
        return Case("too_large", b"text=" + b"a" * (1024 * 1024 + rng.randint(1, 1000)), FORM)
    if choice == 3:
        return Case("form_garbage", "&".join(random_unicode(rng, 10) for _ in range(20)).encode(), FORM)
    event = copy.deepcopy(base.event)
    event["event"] = _wrong_type(rng, event["event"]) if rng.random() < 0.5 else {"type": random_unicode(rng, 8)}
    if rng.random() < 0.2:
        event = {"type": "url_verification", "challenge": rng.choice(["abc", 5, None, "x" * 10_000])}
    return Case("event", json.dumps(event).encode(), JSON)


def cases(n: int, seed: int, base: Base) -> Iterator[Case]:
    """`n` cases: about 60 % /migrate texts, the rest malformed or hostile Slack payloads."""
    rng = random.Random(seed)
    for _ in range(n):
        roll = rng.random()
        if roll < 0.60:
            yield _slash(base, migrate_text(rng), rng)
        elif roll < 0.66:
            yield Case("forged_click", _interactive(_forged_click(rng, base.click)), FORM)
        elif roll < 0.71:
            yield Case("unknown_action", _interactive(_unknown_action(rng, base.click)), FORM)
        elif roll < 0.76:
            payload = rng.choice([base.click, base.view, base.event])
            yield Case("missing_fields", _interactive(_missing(rng, payload)), FORM)
        elif roll < 0.82:
            payload = rng.choice([base.click, base.view, base.event])
            yield Case("wrong_types", _interactive(_wrong_type(rng, payload)), FORM)
        elif roll < 0.85:
            payload = rng.choice([base.click, base.view])
            yield Case("oversized", _interactive(_oversized(rng, payload)), FORM)
        elif roll < 0.88:
            yield Case("view_submission", _interactive(_view(rng, base.view)), FORM)
        elif roll < 0.92:
            yield _bad_json(rng, base)
        elif roll < 0.95:
            yield _content_type_case(rng, base)
        else:
            yield _raw_case(rng, base)
