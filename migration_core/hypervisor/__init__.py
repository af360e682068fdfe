"""Everything that talks to a hypervisor: the libvirt adapter, its typed results, error translation, host probes.

Owns: `libvirt_adapter` (the ONLY module of the project that imports libvirt), `types` (typed values it returns),
`errors` (libvirt errors -> the core's exception tree, by code), `jobstats` (job statistics -> typed readings),
`sshprobe` (the ONLY asyncssh importer: port probes from the source host).
May import: migration_core.errors, models, telemetry, facts (to hand back typed facts), inventory.
"""
