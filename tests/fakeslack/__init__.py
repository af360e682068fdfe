"""Fake Slack for tests: a loopback Web API + Socket Mode server process (slack.md §19) and its driver."""

from .apps import AckTimeout, HttpAck, SocketAck
from .driver import FakeSlack, FakeSlackError, WaitTimeout, wait_for
from .payloads import DriverError, sign

__all__ = [
    "AckTimeout",
    "DriverError",
    "FakeSlack",
    "FakeSlackError",
    "HttpAck",
    "SocketAck",
    "WaitTimeout",
    "sign",
    "wait_for",
]
