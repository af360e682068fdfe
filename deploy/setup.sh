#!/usr/bin/env bash
# Installs everything migrate-bot needs on Debian 12, as root: apt packages, then a venv with the project.
# Idempotent: installs only what is missing. Used by the README's two commands and by .ci/run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
VENV=${MIGRATE_BOT_VENV:-$ROOT/.venv}

# Everything the project, the lab and the tests need from Debian.
APT_PACKAGES=(
  # libvirt + QEMU for the two-host lab (deploy/lab)
  libvirt-daemon-system libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils
  iproute2 util-linux procps
  # building libvirt-python from its sdist and the lab's test guest
  libvirt-dev pkg-config gcc libc6-dev binutils make
  # the venv
  python3 python3-venv python3-dev
  # PostgreSQL for the store's second backend (tests start a private server)
  postgresql
  # ssh for qemu+ssh and the probes over asyncssh
  openssh-client openssh-server
  # the lab CA and certificates for qemu+tls and QEMU migration TLS (certtool)
  gnutls-bin
)

log() { printf '[setup] %s\n' "$*" >&2; }

if [ "$(id -u)" != 0 ]; then
  log "run me as root (apt-get and the lab need it)"; exit 1
fi

missing=()
for p in "${APT_PACKAGES[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" != "install ok installed" ]; then missing+=("$p"); fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    log "warning: /usr/sbin/policy-rc.d is missing; package scripts may try to start a system libvirtd"
  fi
  log "installing from apt: ${missing[*]}"
  timeout 900 apt-get update -q >&2
  DEBIAN_FRONTEND=noninteractive timeout 1800 apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

stamp="$VENV/.migrate-bot-installed"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV"
  /usr/bin/python3 -m venv "$VENV"
fi
# Reinstall only when pyproject.toml changed since the last install.
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  log "installing Python packages into $VENV"
  timeout 900 "$VENV/bin/pip" install -q --upgrade pip >&2
  timeout 1800 "$VENV/bin/pip" install -q -e ".[dev]" >&2
  touch "$stamp"
fi
log "ready: $VENV"
