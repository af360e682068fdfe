"""Installs the Debian packages the lab needs (only the missing ones) and checks the machine can run it."""

from __future__ import annotations

import os
from pathlib import Path

from .proc import LabError, run, say, warn

APT_PACKAGES = (
    "libvirt-daemon-system",
    "libvirt-daemon-driver-qemu",
    "qemu-system-x86",
    "qemu-utils",
    "libvirt-clients",
    "iproute2",
    "gcc",
    "binutils",
    "libc6-dev",
    "openssh-server",  # one sshd per host (qemu+ssh)
    "gnutls-bin",  # certtool: the lab CA and the TLS certificates
)


def missing_packages() -> list[str]:
    """One dpkg-query for all packages (about 20 ms); unknown packages count as missing."""
    proc = run(["dpkg-query", "-W", "-f=${Package} ${Status}\\n", *APT_PACKAGES], check=False)
    installed = {
        line.split()[0].split(":")[0] for line in proc.stdout.splitlines() if line.endswith("install ok installed")
    }
    return [p for p in APT_PACKAGES if p not in installed]


def ensure_packages(install: bool) -> None:
    missing = missing_packages()
    if not missing:
        return
    if not install:
        raise LabError(f"missing packages {' '.join(missing)} and LAB_INSTALL=0: install them with apt-get")
    if not Path("/usr/sbin/policy-rc.d").exists():
        warn(
            "/usr/sbin/policy-rc.d is missing: the libvirt package may start a system libvirtd; "
            "the lab does not need it (stop it if it appears)"
        )
    say(f"installing from apt: {' '.join(missing)}")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    run(["apt-get", "update", "-q"], timeout_s=900, env=env)
    run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], timeout_s=1800, env=env)
    still = missing_packages()
    if still:
        raise LabError(f"apt-get did not install {' '.join(still)}; see `apt-get install {' '.join(still)}`")


def check_machine(virt: str) -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (namespaces, libvirtd, tc): run it with sudo or as root")
    if virt == "kvm" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        raise LabError(
            "/dev/kvm is missing or not accessible: the lab VMs are type='kvm'. "
            "On a machine without KVM set LAB_VIRT=qemu (TCG; it loses writes in long "
            "migrations, see reference/lab.md 8.1)"
        )
