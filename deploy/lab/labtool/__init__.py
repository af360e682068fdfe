"""The two-host KVM lab behind deploy/lab/lab (stdlib only)."""
