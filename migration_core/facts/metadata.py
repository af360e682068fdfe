"""The bot's own section of a domain's libvirt <metadata>: the anti-affinity groups a VM belongs to (pure).

Operators tag a VM once on its host and every drain or `to any` placement honours it:

    virsh metadata vm42 --uri urn:migrate-bot:placement:1 --key mb \
        --set '<placement><anti-affinity group="db"/></placement>'

which libvirt stores as

    <metadata>
      <mb:placement xmlns:mb="urn:migrate-bot:placement:1">
        <mb:anti-affinity group="db"/>
      </mb:placement>
    </metadata>

Only elements in that namespace are read (other tools' metadata is left alone). A group name that breaks the
naming rule is reported, not used: a typo must not silently put a VM in a group of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

PLACEMENT_NS = "urn:migrate-bot:placement:1"
# The VM/host name rule of grammar.values (facts may not import the grammar): groups appear in the same places.
_GROUP_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}", re.ASCII)
_GROUP_RULE = "1 to 64 characters from A-Z a-z 0-9 _ . : -, starting with a letter or a digit"


@dataclass(frozen=True)
class PlacementMetadata:
    """What the VM's metadata says about placement: its anti-affinity groups and any entry that was refused."""

    anti_affinity_groups: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()


def parse_placement_metadata(domain: etree._Element) -> PlacementMetadata:
    """<domain> element -> the groups named by `<mb:anti-affinity group="..."/>` (file order, no repeats)."""
    metadata = domain.find("metadata")
    if metadata is None:
        return PlacementMetadata()
    groups: list[str] = []
    problems: list[str] = []
    for element in metadata.iter(f"{{{PLACEMENT_NS}}}anti-affinity"):
        group = (element.get("group") or "").strip()
        if _GROUP_RE.fullmatch(group) is None:
            problems.append(f"metadata anti-affinity group {group!r} ignored: a group name is {_GROUP_RULE}")
        elif group not in groups:
            groups.append(group)
    return PlacementMetadata(tuple(groups), tuple(problems))
