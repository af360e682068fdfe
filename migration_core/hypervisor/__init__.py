"""Everything that talks to a hypervisor: THE port, the libvirt adapter, the in-memory fleet, error translation.

Owns: `port` (`HypervisorPort`, the Protocol the executor, preflight runner, verification, dispatcher and service
depend on; typed values only), `types` (those typed values), `libvirt_adapter` (the ONLY module of the product
that imports libvirt; a benchmark may, to time raw calls) and its parts by composition, `base` (the typed
Session and libvirt object Protocols the parts are written against), `fact_readers` (host/domain/CPU facts),
`storage` (pools, volumes, networks), `errors` (libvirt errors -> the core's exception tree, by code),
`jobstats` (job statistics -> typed readings), `sshprobe` (the ONLY asyncssh importer: port probes from the
source host), `fleet/` (simulated hosts, VMs and migrations on virtual time behind the same port: fast tests
and scale benchmarks).
May import: migration_core.errors, models, telemetry, facts (to hand back typed facts; the values that
facts carry, such as `DomainInfo` and `HostVersions`, are defined there and re-exported by `types`), inventory.
"""
