"""Typed facts about hosts and VMs, parsed once from libvirt XML with lxml (no regexes over XML).

Owns: `vm`, `host`, `devices` (the typed facts), `domxml*` (domain, capabilities and node-device XML -> facts),
`xmlutil` (safe parsing, units),
`metadata` (the bot's own <metadata>: anti-affinity groups), `gathered` (everything preflight needs,
bundled). Pure, no I/O.
May import: migration_core.errors, migration_core.models.
"""
