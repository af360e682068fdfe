"""The option table of /migrate: virsh's names, arity, one-line help, virsh spellings accepted or refused."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Arity(Enum):
    """How many values an option takes."""

    FLAG = "flag"
    VALUE = "value"
    OPTIONAL_INT = "optional int"


@dataclass(frozen=True)
class OptionSpec:
    """One option: canonical name (no dashes), arity, value placeholder and a one-line description."""

    name: str
    arity: Arity
    metavar: str
    summary: str
    live_only: bool = False
    history_only: bool = False
    drain_only: bool = False


# Order is the order `help options` lists them and `command_to_text` writes them.
OPTIONS: tuple[OptionSpec, ...] = (
    OptionSpec("live", Arity.FLAG, "", "migrate while the VM runs (default for a running VM)"),
    OptionSpec("offline", Arity.FLAG, "", "move only the definition of a shut-off VM (default for one)"),
    OptionSpec("persistent", Arity.FLAG, "", "keep the VM defined on the destination (the default)"),
    OptionSpec("transient", Arity.FLAG, "", "run it on the destination without defining it there"),
    OptionSpec("undefine-source", Arity.FLAG, "", "let libvirt remove the source's definition as the migration ends"),
    OptionSpec("keep-source", Arity.FLAG, "",
               "keep the shut-off definition (and copied disk images) on the source, as virsh does"),
    OptionSpec("postcopy", Arity.FLAG, "", "allow switching to post-copy if pre-copy does not converge",
               live_only=True),
    OptionSpec("postcopy-after", Arity.VALUE, "DURATION",
               "switch to post-copy after this long in pre-copy (implies --postcopy)", live_only=True),
    OptionSpec("auto-converge", Arity.FLAG, "", "slow the guest's vCPUs down until memory copy converges",
               live_only=True),
    OptionSpec("parallel", Arity.OPTIONAL_INT, "[N]",
               "copy memory over N connections (multi-FD, 1..255; 2 when N is left out)", live_only=True),
    OptionSpec("max-downtime", Arity.VALUE, "DURATION",
               "longest pause allowed at switch-over (a bare number is milliseconds)", live_only=True),
    OptionSpec("bandwidth", Arity.VALUE, "RATE",
               "cap the transfer rate, MiB/s (500, 500M, 2G, 2GiB/s)", live_only=True),
    OptionSpec("copy-storage", Arity.VALUE, "all|inc",
               "copy non-shared disks: whole disks (all) or the top image only (inc)", live_only=True),
    OptionSpec("compressed", Arity.FLAG, "", "compress memory pages on the wire", live_only=True),
    OptionSpec("tls", Arity.FLAG, "", "encrypt the migration data with TLS"),
    OptionSpec("timeout", Arity.VALUE, "DURATION",
               "give up after this long: abort, or switch to post-copy if --postcopy is on"),
    OptionSpec("reason", Arity.VALUE, "TEXT", 'change ticket or reason: --reason "CHG-1234 patching"'),
    OptionSpec("ticket", Arity.VALUE, "ID", "the change ticket (checked against the policy file's pattern)"),
    OptionSpec("at", Arity.VALUE, "TIME",
               "approve now, start at TIME (zone or the policy's; expires if it cannot start soon after)"),
    OptionSpec("window", Arity.VALUE, "START/END", "approve now, start between START and END, else expire"),
    OptionSpec("emergency", Arity.FLAG, "",
               "bypass a change freeze (needs --reason; the policy's emergency number of approvers)"),
    OptionSpec("limit", Arity.VALUE, "N", "history only: how many jobs to list (1..500, default 20)",
               history_only=True),
    OptionSpec("to", Arity.VALUE, "HOST[,HOST...]", "drain only: the hosts the VMs may go to (default: any other)",
               drain_only=True),
    OptionSpec("except", Arity.VALUE, "VM[,VM...]", "drain only: VMs to leave where they are", drain_only=True),
    OptionSpec("include-stopped", Arity.FLAG, "", "drain only: also move shut-off VMs (offline)",
               drain_only=True),
)  # fmt: skip
OPTIONS_BY_NAME = {o.name: o for o in OPTIONS}
LIVE_ONLY = tuple(o.name for o in OPTIONS if o.live_only)

# virsh spellings operators type from habit -> (our option, implied value).
ALIASES: dict[str, tuple[str, str | None]] = {
    "undefinesource": ("undefine-source", None),
    "keepsource": ("keep-source", None),
    "copy-storage-all": ("copy-storage", "all"),
    "copy-storage-inc": ("copy-storage", "inc"),
    "parallel-connections": ("parallel", None),
    "autoconverge": ("auto-converge", None),
    "post-copy": ("postcopy", None),
}
# virsh options that /migrate deliberately does not take, with what to do instead.
VIRSH_ONLY: dict[str, str] = {
    "p2p": "the bot chooses the connection mode itself",
    "direct": "the bot chooses the connection mode itself",
    "tunnelled": "the bot chooses the connection mode itself; use --tls to encrypt the data",
    "desturi": "name the destination as `to <host>` (a host from the hosts file)",
    "migrateuri": "the data address comes from the hosts file (migration_address)",
    "listen-address": "the data address comes from the hosts file (migration_address)",
    "dname": "renaming a VM while migrating it is not supported",
    "xml": "changing the VM's XML while migrating it is not supported",
    "suspend": "not supported: the VM keeps running (or use --offline for a shut-off VM)",
    "unsafe": "not supported: fix what preflight reports instead of forcing it",
    "verbose": "progress is always shown in the thread",
    "abort-on-error": "the bot always aborts on I/O errors",
    "timeout-postcopy": "use --postcopy-after DURATION",
}
