"""The hosts file (TOML): host names, libvirt URIs, peer URIs, migration addresses, ssh targets, limits, labels.

Owns: loading and validating the inventory, every error naming the file, host and field. Pure (reads one file).
May import: migration_core.errors, migration_core.models.
"""
