"""The pure rules behind issue 16's fixes, as tables: edge gates, workspace binding, connection cap, URI masking."""

from __future__ import annotations

import pytest

from bot.http_guard import connection_cap
from handlers.gate import GateKind, Workspace, edge_verdict, foreign_problem, team_of
from migration_core.dispatch.policy import VerdictCode
from migration_core.inventory.fields import mask_uri

REQ = ("U_ALICE",)
CHANS = ("C_OPS",)


@pytest.mark.parametrize(
    ("kind", "user", "channel", "approver", "requesters", "channels", "code"),
    [
        (GateKind.PREFLIGHT, "U_ALICE", "C_OPS", False, REQ, CHANS, VerdictCode.OK),
        (GateKind.PREFLIGHT, "U_ALICE", "", False, REQ, CHANS, VerdictCode.WRONG_CHANNEL),  # the empty-channel bypass
        (GateKind.READ, "U_ALICE", None, False, (), CHANS, VerdictCode.WRONG_CHANNEL),
        (GateKind.READ, "U_ALICE", "D123", False, (), CHANS, VerdictCode.WRONG_CHANNEL),  # a DM
        (GateKind.READ, "U_ALICE", "", False, (), (), VerdictCode.OK),  # no allow-list: anywhere
        (GateKind.READ, "U_MALLORY", "C_OPS", False, REQ, CHANS, VerdictCode.NOT_ALLOWED),
        (GateKind.READ, "U_BOB", "C_OPS", True, REQ, CHANS, VerdictCode.OK),  # approvers may read
        (GateKind.CONTROL, "U_MALLORY", "C_OPS", False, REQ, CHANS, VerdictCode.OK),  # the service decides
        (GateKind.CONTROL, "U_MALLORY", "C_RANDOM", False, REQ, CHANS, VerdictCode.WRONG_CHANNEL),
        (GateKind.READ, "", "C_OPS", False, (), (), VerdictCode.NOT_ALLOWED),
    ],
)
def test_edge_verdicts(kind, user, channel, approver, requesters, channels, code):
    assert edge_verdict(kind, user, channel, approver, requesters, channels).code is code


@pytest.mark.parametrize(
    ("bound", "team", "enterprise", "refused"),
    [
        (Workspace("T1"), "T1", None, False),
        (Workspace("T1"), "T0OTHER", None, True),
        (Workspace("T1"), None, None, True),
        (Workspace("T1"), "T1", "E1", True),  # an org the bot is not installed in
        (Workspace("T1", "E1"), "T1", "E1", False),
        (Workspace("T1", "E1"), "T1", None, True),
    ],
)
def test_workspace_binding(bound, team, enterprise, refused):
    assert (foreign_problem(bound, team, enterprise) is not None) is refused


def test_team_of_reads_every_payload_shape():
    assert team_of({"team_id": "T1", "enterprise_id": "E1"}) == ("T1", "E1")  # slash command
    assert team_of({"team": {"id": "T1"}, "enterprise": None}) == ("T1", None)  # block_actions
    assert team_of({"user": {"id": "U1", "team_id": "T2"}}) == ("T2", None)


@pytest.mark.parametrize(("wanted", "nofile", "cap"), [(512, 256, 192), (512, 1024, 512), (512, 30, 16), (64, -1, 64)])
def test_connection_cap_fits_the_open_files_limit(wanted, nofile, cap):
    assert connection_cap(wanted, nofile) == cap


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("qemu+tls://user:pw-SECRET1@kvm1/system", "qemu+tls://user:***@kvm1/system"),
        ("qemu+ssh://root@kvm1/system?password=s3&socket=/x", "qemu+ssh://root@kvm1/system?password=***&socket=/x"),
        ("qemu+ssh://root@kvm1/system?socket=/x&Token=abc", "qemu+ssh://root@kvm1/system?socket=/x&Token=***"),
        ("qemu+ssh://root@kvm1/system", "qemu+ssh://root@kvm1/system"),
    ],
)
def test_mask_uri(uri, masked):
    assert mask_uri(uri) == masked


def test_the_connection_cap_setting_is_checked():
    from bot.settings import SettingsError, load_settings

    assert load_settings({}).http_max_connections == 512
    assert load_settings({"MIGRATE_BOT_HTTP_MAX_CONNECTIONS": "2000"}).http_max_connections == 2000
    for bad in ("0", "15", "lots", "-1"):
        with pytest.raises(SettingsError, match="MIGRATE_BOT_HTTP_MAX_CONNECTIONS"):
            load_settings({"MIGRATE_BOT_HTTP_MAX_CONNECTIONS": bad})
