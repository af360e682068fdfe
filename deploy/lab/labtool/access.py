"""Remote access to the lab hosts the way production has it: one sshd per host (qemu+ssh) and TLS (qemu+tls).

Everything is made once per lab under $LAB_ROOT/ssh and $LAB_ROOT/tls (kept while the lab lives, so a warm
`up` only checks files): an ssh host key per host, the bot's client key and its known_hosts; a lab CA, a
server certificate per host naming its host name and address, a client certificate for the bot and one for
the hosts' own peer-to-peer connections, and QEMU's migration-TLS directory per host. The bot's side needs
no change to the machine: its ssh options are in an `ssh -F` config reached through the URI's `command=`
(production: the bot user's ~/.ssh), its certificates in a `pkipath=` directory (production: /etc/pki).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from .config import HOSTS, HostSpec, Paths
from .proc import LabError, alive, netns_id, ns_id, proc_comm, read_int, run

LIBVIRT_TLS_PORT = 16514
SSH_PORT = 22
CA_NAME = "migrate-bot lab CA"
ORG = "migrate-bot lab"
BOT_CN = "migrate-bot"  # the bot's client certificate (allowed by every host's tls_allowed_dn_list)
PEER_CN = "lab-peer"  # the hosts' client certificate for P2P connections to each other
CERT_DAYS = 3650


def ssh_dir(paths: Paths) -> Path:
    return paths.root / "ssh"


def tls_dir(paths: Paths) -> Path:
    return paths.root / "tls"


def host_pki(paths: Paths, host: HostSpec) -> Path:
    """libvirtd's server certificate for `host` (its key_file/cert_file/ca_file in libvirtd.conf)."""
    return tls_dir(paths) / host.name


def qemu_pki(paths: Paths, host: HostSpec) -> Path:
    """QEMU's migration-TLS directory for `host` (qemu.conf migrate_tls_x509_cert_dir)."""
    return tls_dir(paths) / f"qemu-{host.name}"


def bot_pki(paths: Paths) -> Path:
    """The bot's client identity: the `pkipath=` of hosts-tls.toml's URIs (production: /etc/pki)."""
    return tls_dir(paths) / "bot"


def peer_pki(paths: Paths) -> Path:
    """The hosts' client identity when one libvirtd dials the other (`pkipath=` of the peer URIs)."""
    return tls_dir(paths) / "peer"


def ssh_command(paths: Paths) -> Path:
    """`ssh -F <lab ssh_config>`: the URI's command=, so the bot's ssh uses the lab key and known_hosts."""
    return ssh_dir(paths) / "ssh"


def sshd_pidfile(paths: Paths, host: HostSpec) -> Path:
    return paths.host(host) / "run" / "sshd.pid"


def sshd_config_path(paths: Paths, host: HostSpec) -> Path:
    return paths.host(host) / "sshd_config"


def ssh_uri(paths: Paths, host: HostSpec) -> str:
    """How the bot reaches `host` over ssh: the lab key and strict host keys from the lab's known_hosts come from
    the ssh client drop-in below (the hosts file may name neither a program with command= nor a keyfile outside
    /etc/migrate-bot, issue 16; production keeps them in the bot user's ~/.ssh)."""
    return f"qemu+ssh://root@{host.ip}/system?no_tty=1"


def ssh_dropin_path() -> Path:
    """The machine's ssh client settings for the lab addresses only (removed by `lab down`)."""
    from .config import NETNS_PREFIX

    return Path("/etc/ssh/ssh_config.d") / f"{NETNS_PREFIX}-migrate-bot-lab.conf"


def ssh_dropin(paths: Paths) -> str:
    """What production puts in the bot user's ~/.ssh/config, limited to the lab hosts' addresses."""
    addrs = ",".join(h.ip for h in HOSTS)
    return f"""# migrate-bot lab ({paths.root}): written by deploy/lab/lab up, removed by lab down
Match host {addrs}
  IdentityFile {ssh_dir(paths) / "id_ed25519"}
  IdentitiesOnly yes
  UserKnownHostsFile {ssh_dir(paths) / "known_hosts"}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
"""


def ensure_ssh_dropin(paths: Paths) -> None:
    target = ssh_dropin_path()
    text = ssh_dropin(paths)
    if target.parent.is_dir() and (not target.exists() or target.read_text() != text):
        target.write_text(text)


def remove_ssh_dropin(paths: Paths) -> None:
    target = ssh_dropin_path()
    if target.exists() and str(paths.root) in target.read_text():
        target.unlink()


def tls_uri(paths: Paths, host: HostSpec) -> str:
    """How the bot reaches `host` over TLS, presenting its client certificate from `pkipath=`."""
    return f"qemu+tls://{host.ip}/system?pkipath={bot_pki(paths)}"


def tls_peer_uri(paths: Paths, host: HostSpec) -> str:
    """How the other host's libvirtd dials `host` over TLS (P2P dconnuri), as the lab's peer identity."""
    return f"qemu+tls://{host.ip}/system?pkipath={peer_pki(paths)}"


# --- certificates (certtool) ----------------------------------------------------------------------------


def _certtool(*args: str, template: str | None = None) -> None:
    with tempfile.NamedTemporaryFile("w", suffix=".tmpl") as tmpl:
        extra: list[str] = []
        if template is not None:
            tmpl.write(template)
            tmpl.flush()
            extra = ["--template", tmpl.name]
        run(["certtool", *args, *extra], timeout_s=60)


def make_key(path: Path) -> None:
    _certtool("--generate-privkey", "--key-type=rsa", "--bits=2048", "--outfile", str(path))
    path.chmod(0o600)


def make_ca(ca_dir: Path) -> None:
    ca_dir.mkdir(parents=True, exist_ok=True)
    make_key(ca_dir / "cakey.pem")
    _certtool(
        "--generate-self-signed",
        "--load-privkey",
        str(ca_dir / "cakey.pem"),
        "--outfile",
        str(ca_dir / "cacert.pem"),
        template=f'cn = "{CA_NAME}"\norganization = "{ORG}"\nca\ncert_signing_key\nexpiration_days = {CERT_DAYS}\n',
    )


def sign_cert(
    ca_dir: Path,
    key: Path,
    out: Path,
    *,
    cn: str,
    server: bool,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
    activation: str | None = None,
    expiration: str | None = None,
) -> None:
    """One certificate signed by the CA in `ca_dir`; `activation`/`expiration` as certtool dates
    ("2020-01-01 00:00:00 UTC") make certificates that are not yet or no longer valid (tests)."""
    lines = [f'cn = "{cn}"', f'organization = "{ORG}"', "signing_key", "encryption_key"]
    lines.append("tls_www_server" if server else "tls_www_client")
    lines += [f'dns_name = "{d}"' for d in dns] + [f'ip_address = "{i}"' for i in ips]
    if activation:
        lines.append(f'activation_date = "{activation}"')
    if expiration:
        lines.append(f'expiration_date = "{expiration}"')
    else:
        lines.append(f"expiration_days = {CERT_DAYS}")
    _certtool(
        "--generate-certificate",
        "--load-privkey",
        str(key),
        "--load-ca-certificate",
        str(ca_dir / "cacert.pem"),
        "--load-ca-privkey",
        str(ca_dir / "cakey.pem"),
        "--outfile",
        str(out),
        template="\n".join(lines) + "\n",
    )


def client_pki(ca_dir: Path, out: Path, cn: str) -> None:
    """A libvirt client pkipath directory: cacert.pem, clientcert.pem, clientkey.pem."""
    out.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca_dir / "cacert.pem", out / "cacert.pem")
    make_key(out / "clientkey.pem")
    sign_cert(ca_dir, out / "clientkey.pem", out / "clientcert.pem", cn=cn, server=False)


def _server_pki(paths: Paths, ca: Path, host: HostSpec) -> None:
    d = host_pki(paths, host)
    d.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca / "cacert.pem", d / "cacert.pem")
    make_key(d / "serverkey.pem")
    names = (host.hostname,)
    sign_cert(ca, d / "serverkey.pem", d / "servercert.pem", cn=host.hostname, server=True, dns=names, ips=(host.ip,))
    # QEMU's layout (one directory, dashes): the destination QEMU serves server-cert.pem, the source QEMU
    # presents client-cert.pem (migrate_tls_x509_verify = 1 makes the destination check it).
    q = qemu_pki(paths, host)
    q.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(ca / "cacert.pem", q / "ca-cert.pem")
    shutil.copyfile(d / "servercert.pem", q / "server-cert.pem")
    shutil.copyfile(d / "serverkey.pem", q / "server-key.pem")
    make_key(q / "client-key.pem")
    sign_cert(ca, q / "client-key.pem", q / "client-cert.pem", cn=host.hostname, server=False)


def ensure_tls(paths: Paths) -> bool:
    """The lab CA and every certificate, made once per lab (a complete set is kept); True if made now."""
    root = tls_dir(paths)
    done = root / ".complete"
    if done.exists():
        return False
    shutil.rmtree(root, ignore_errors=True)
    ca = root / "ca"
    make_ca(ca)
    for h in HOSTS:
        _server_pki(paths, ca, h)
    client_pki(ca, bot_pki(paths), BOT_CN)
    client_pki(ca, peer_pki(paths), PEER_CN)
    done.write_text("the lab CA and certificates are complete\n")
    return True


# --- ssh ------------------------------------------------------------------------------------------------


def _keygen(path: Path, comment: str) -> None:
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], timeout_s=30)


def ssh_client_config(paths: Paths, known_hosts: Path, key: Path) -> str:
    """What production puts in the bot user's ~/.ssh/config: strict host keys, this key only, no prompts."""
    return f"""# migrate-bot lab: the bot's ssh client settings (deploy/lab; production: the bot user's ~/.ssh/config)
Host *
  IdentityFile {key}
  IdentitiesOnly yes
  UserKnownHostsFile {known_hosts}
  GlobalKnownHostsFile /dev/null
  StrictHostKeyChecking yes
  BatchMode yes
  ConnectTimeout 10
"""


def write_ssh_wrapper(path: Path, config: Path) -> None:
    """An executable that runs ssh with only `config` (libvirt's command= takes a program, not arguments)."""
    path.write_text(f'#!/bin/sh\nexec /usr/bin/ssh -F {config} "$@"\n')
    path.chmod(0o755)


def known_hosts_line(host: HostSpec, pubkey: str) -> str:
    return f"{host.ip},{host.hostname} {' '.join(pubkey.split()[:2])}\n"


def known_hosts_line_for(ip: str, hostname: str, pubkey_file: Path) -> str:
    """A known_hosts line saying that `pubkey_file` is the host key of ip/hostname (tests forge changed keys)."""
    return f"{ip},{hostname} {' '.join(pubkey_file.read_text().split()[:2])}\n"


def ensure_ssh(paths: Paths) -> bool:
    """Host keys, the bot's key, authorized_keys, known_hosts and the bot's ssh config; True if made now."""
    d = ssh_dir(paths)
    done = d / ".complete"
    if done.exists():
        return False
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    d.chmod(0o700)
    _keygen(d / "id_ed25519", "migrate-bot@lab")
    (d / "authorized_keys").write_text((d / "id_ed25519.pub").read_text())
    known = ""
    for h in HOSTS:
        _keygen(d / f"host_{h.name}_ed25519", f"root@{h.hostname}")
        known += known_hosts_line(h, (d / f"host_{h.name}_ed25519.pub").read_text())
    (d / "known_hosts").write_text(known)
    (d / "ssh_config").write_text(ssh_client_config(paths, d / "known_hosts", d / "id_ed25519"))
    write_ssh_wrapper(ssh_command(paths), d / "ssh_config")
    done.write_text("the lab ssh keys are complete\n")
    return True


def sshd_config(paths: Paths, host: HostSpec) -> str:
    d = ssh_dir(paths)
    return f"""# migrate-bot lab {host.name}: written by deploy/lab/lab up (key-only, on the lab address)
ListenAddress {host.ip}:{SSH_PORT}
HostKey {d / f"host_{host.name}_ed25519"}
AuthorizedKeysFile {d / "authorized_keys"}
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile /run/libvirt/sshd.pid
LogLevel VERBOSE
"""


def sshd_pid(paths: Paths, host: HostSpec) -> int | None:
    pid = read_int(sshd_pidfile(paths, host))
    if pid is None or not alive(pid) or proc_comm(pid) != "sshd":
        return None
    return pid if ns_id(pid, "net") == netns_id(host.netns) else None


def start_sshd(paths: Paths, host: HostSpec, daemon_pid: int) -> int:
    """sshd inside the host's namespaces (entered through its libvirtd), so ssh sessions see that host's
    /run/libvirt and virt-ssh-helper reaches that host's libvirtd."""
    conf = sshd_config_path(paths, host)
    conf.write_text(sshd_config(paths, host))
    log = "/var/log/libvirt/sshd.log"
    script = f"mkdir -p /run/sshd && chmod 755 /run/sshd && exec /usr/sbin/sshd -f {conf} -E {log}"
    out = subprocess.run(
        ["nsenter", "-t", str(daemon_pid), "-m", "-u", "-n", "--", "/bin/sh", "-c", script],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "HOME": "/root"},
        check=False,
    )
    for _ in range(80):
        pid = sshd_pid(paths, host)
        if pid:
            return pid
        if out.returncode != 0:
            break
        time.sleep(0.125)
    raise LabError(
        f"sshd of {host.name} did not start ({(out.stderr or out.stdout).strip()}); "
        f"see {paths.host(host) / 'log' / 'sshd.log'}"
    )


def ensure_sshd(paths: Paths, host: HostSpec, daemon_pid: int) -> bool:
    """Start the host's sshd unless it runs with the current config; True if (re)started."""
    pid = sshd_pid(paths, host)
    conf = sshd_config_path(paths, host)
    if pid and conf.exists() and conf.read_text() == sshd_config(paths, host):
        return False
    if pid:
        os.kill(pid, 15)
    start_sshd(paths, host, daemon_pid)
    return True
