"""Port probes from the SOURCE host over SSH (asyncssh): can the source reach the destination's ports?

This is the only module of the core that imports asyncssh. No command runs on the source host: the probe asks
the source's sshd to open a TCP connection to host:port on our behalf (an SSH "direct-tcpip" channel, the
mechanism behind `ssh -W`), which is exactly "is that port reachable from the source". So no text, whether from
a user or from the hosts file, ever reaches a remote shell.
"""

from __future__ import annotations

import asyncio

import asyncssh

from migration_core.inventory.fields import SshTarget


async def probe_from(
    target: SshTarget, host: str, port: int, timeout_s: float, *, known_hosts: str | None = None
) -> tuple[bool | None, str]:
    """(True, "open") / (False, why) as seen from `target`; (None, why) when the source itself cannot be reached.

    `known_hosts=None` uses the bot user's ~/.ssh/known_hosts: host keys are always checked.
    """
    options: dict[str, object] = {"connect_timeout": timeout_s}
    if known_hosts is not None:
        options["known_hosts"] = known_hosts
    try:
        conn = await asyncio.wait_for(
            asyncssh.connect(target.host, port=target.port or 22, username=target.user, **options), timeout_s
        )
    except (OSError, asyncssh.Error, TimeoutError) as err:
        return None, f"could not ssh to {target.host} to probe from there ({err})"
    try:
        try:
            _reader, writer = await asyncio.wait_for(conn.open_connection(host, port), timeout_s)
        except asyncssh.ChannelOpenError as err:
            # OpenSSH says "Connection refused", asyncssh's server "[Errno 111] Connect call failed": one meaning.
            refused = "refused" in err.reason.lower() or "errno 111" in err.reason.lower()
            why = "connection refused" if refused else err.reason
            return False, f"{why} (as seen from {target.host})"
        except TimeoutError:
            return False, f"no answer within {timeout_s:g} s (as seen from {target.host})"
        writer.close()
        return True, f"open (as seen from {target.host})"
    finally:
        conn.close()
