"""Pool, volume, interface and node-device XML -> typed facts (facts/storage_xml.py), table-driven."""

from __future__ import annotations

import pytest

from migration_core.errors import PreflightError
from migration_core.facts.storage_xml import interface_kind, nodedev_interface, parse_pool, volume_format

POOL_DIR = """<pool type='dir'><name>default</name><capacity unit='bytes'>1</capacity>
  <source/><target>
    <path>/var/lib/libvirt/images</path><permissions><mode>0711</mode></permissions></target></pool>"""
POOL_NETFS = """<pool type="netfs"><name>nfs</name><source><host name="filer"/><dir path="/export"/>
  <format type="nfs"/></source><target><path>/mnt/vms</path></target></pool>"""
POOL_RBD = "<pool type='rbd'><name>ceph</name><source><name>vms</name></source></pool>"
VOL = """<volume type='file'><name>a.qcow2</name><source/><capacity unit='bytes'>10</capacity>
  <target><path>/var/lib/libvirt/images/a.qcow2</path><format type='qcow2'/></target></volume>"""
NODEDEV = """<device><name>net_eth0_52_54_00_aa_bb_cc</name><path>/sys/devices/virtual/net/eth0</path>
  <parent>computer</parent><capability type='net'><interface>eth0</interface>
  <address>52:54:00:aa:bb:cc</address><capability type='80203'/></capability></device>"""


@pytest.mark.parametrize(
    ("xml", "kind", "path"),
    [(POOL_DIR, "dir", "/var/lib/libvirt/images"), (POOL_NETFS, "netfs", "/mnt/vms"), (POOL_RBD, "rbd", None)],
)
def test_pool_type_and_target(xml: str, kind: str, path: str | None) -> None:
    pool = parse_pool(xml)
    assert (pool.pool_type, pool.target_path) == (kind, path)


def test_volume_format_interface_kind_and_nodedev_name() -> None:
    assert volume_format(VOL) == "qcow2"
    assert volume_format("<volume><name>x</name></volume>") is None
    assert interface_kind("<interface type='bridge' name='br0'><bridge/></interface>") == "bridge"
    assert interface_kind("<interface name='lo'/>") == "unknown"
    assert nodedev_interface(NODEDEV) == "eth0"
    assert nodedev_interface("<device><name>computer</name><capability type='system'/></device>") is None


def test_broken_xml_is_a_clear_error() -> None:
    with pytest.raises(PreflightError, match="storage pool XML"):
        parse_pool("<pool type='dir'>")
