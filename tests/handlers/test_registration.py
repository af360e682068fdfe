"""Registration on a real Bolt app: module-level listeners, Bolt's own types, `deps` bound, the catch-alls last."""

from __future__ import annotations

import inspect
import typing

from slack_bolt.async_app import AsyncApp
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_bolt.util.utils import get_arg_names_of_callable, get_name_for_callable
from slack_sdk.web.async_client import AsyncWebClient

from bot.settings import Settings
from handlers import actions, commands, drain_actions, home
from handlers.deps import Deps

# What Bolt's kwargs injection can give a listener (slack_bolt.kwargs_injection.async_args), the ones used here.
BOLT_ARGS = {"ack", "body", "respond", "client", "request", "event"}
BOLT_TYPES = {"ack": AsyncAck, "client": AsyncWebClient}


async def _nobody(user: str) -> bool:
    return False


def _registered() -> list[typing.Any]:
    app = AsyncApp(client=AsyncWebClient(token="xoxb-test"), signing_secret="not-used")
    deps = Deps(service=typing.cast(typing.Any, None), settings=Settings(), approver_check=_nobody)
    for module in (commands, drain_actions, actions, home):  # the order of bot.app.build_app
        module.register(app, deps)
    return [listener.ack_function for listener in app._async_listeners]


def test_every_listener_is_a_module_level_function_bolt_knows_by_name():
    names = [get_name_for_callable(f) for f in _registered()]
    assert names == [
        "on_migrate",
        "unknown_command",
        *["on_drain_button"] * 2,  # a drain card's Approve and Deny, before the catch-all of actions
        *["on_button"] * 6,  # approve, deny, abort, postcopy, downtime, bandwidth: one listener, six bindings
        "unknown_action",  # the catch-alls come after what they must not shadow
        "on_downtime",
        "on_bandwidth",
        "unknown_view",
        "on_home_opened",
        "other_event",
    ]
    for bound in _registered():
        fn = inspect.unwrap(bound)
        assert "<locals>" not in fn.__qualname__ and fn.__module__.startswith("handlers.")
        assert inspect.iscoroutinefunction(fn)


def test_bolt_is_asked_only_for_its_own_arguments_and_deps_is_bound():
    for bound in _registered():
        assert set(get_arg_names_of_callable(bound)) <= BOLT_ARGS
        assert isinstance(bound.keywords["deps"], Deps)  # functools.partial, bound once per app


def test_each_button_is_bound_to_its_action_id():
    buttons = [b for b in _registered() if b.__name__ == "on_button"]
    assert [b.keywords["action_id"] for b in buttons] == [
        "approve",
        "deny",
        "abort",
        "postcopy",
        "downtime",
        "bandwidth",
    ]


def test_listeners_are_typed_with_bolts_types():
    for bound in _registered():
        hints = typing.get_type_hints(inspect.unwrap(bound))
        for arg, kind in BOLT_TYPES.items():
            if arg in hints:
                assert hints[arg] is kind, (bound, arg)
        if "respond" in hints:
            assert hints["respond"] == AsyncRespond | None  # Bolt gives None when there is no response_url
        assert hints["deps"] is Deps and hints["return"] is type(None)
