"""The hosts file (TOML): host names, libvirt URIs, peer URIs, migration addresses, ssh targets, limits, labels;
and the change-control policy file (`policy_file`: approvals, groups, owners, freezes, tickets, schedules).

Owns: loading and validating both files, every error naming the file, entry and field. Pure (reads one file).
May import: migration_core.errors, migration_core.models, and grammar.values (the one rule for host and VM
names, shared with the command grammar).
"""
