"""Typed facts about hosts and VMs, parsed once from libvirt XML with lxml (no regexes over XML).

Owns: `vm`, `host`, `devices`, `domain_state` (the typed facts; `host` also holds the port's readings that
facts carry: versions, clock, networks), `domxml*` (domain, capabilities and node-device XML -> facts),
`storage_xml` (pool and volume XML -> facts), `xmlutil` (safe parsing, units),
`metadata` (the bot's own <metadata>: anti-affinity groups), `gathered` (everything preflight needs,
bundled). Pure, no I/O.
May import: migration_core.errors, migration_core.models (and the leaves `limits` and `units`).
"""
