"""Generated `/migrate` texts for the fuzz (pure, seeded): grammar-built, hostile, mutated, random, huge.

`migrate_text(rng)` mixes: texts the grammar accepts (migrations to fresh and known VMs, plan, status,
history, hosts, help, cancel), grammar words with hostile names and odd values, grammar-blind mutations
(insert, delete, swap, repeat, case flips, smart quotes, control characters), random unicode from many
blocks, and a few huge texts. Host names are the fuzz inventory's (unreachable) hosts or unknown names.
"""

from __future__ import annotations

import random

from migration_core.grammar.spec import OPTIONS

_VMS = ["vm42", "busy", "stopped", "disky", "shared", "web-01", "db.prod", "a", "x" * 64, "VM_9:blue"]
_HOSTILE = [
    "$(reboot)", "`id`", "vm42;rm -rf /", "vm42|nc", "../../etc/passwd", "vm42\nhostB", "-rf", "--help",
    "vm%00", "vm42\x00", "‮vm42", "vm42\u200b", "ｖｍ４２", "vm42'", 'vm42"', "vm42 && reboot", "*", "?",
    "x" * 65, "", " ", "\t", "vm42\\", "{{7*7}}", "${jndi:ldap://x}", "<script>", "<@U_BOB>", "<!channel>",
    "#41", "41", "-1", "9" * 30, "nan", "inf", "1e309",
]  # fmt: skip
_HOSTS = ["hostA", "hostB", "hosta", "HOSTB", "hostC", "kvm1", "host B", "hostB.", "hostA:16509"]
_VERBS = ["", "", "", "plan", "status", "history", "hosts", "help", "cancel", "abort", "approve", "deny"]
_DASHES = ["--", "—", "–", "-", "−", "‐‐", "---", ""]
_VALUES = [
    "5s", "300", "300ms", "1h30m", "0", "-5", "1e9", "999999999999999999999", "500M", "2GiB/s", "all", "inc",
    "none", "", "NaN", "∞", "5 s", "4G", '"quoted reason"', "“smart”", "'single'", "CHG-1234", "x" * 300,
]  # fmt: skip
_UNICODE_RANGES = [
    (0x20, 0x7E),
    (0x00, 0x1F),
    (0x80, 0x2FF),
    (0x2000, 0x206F),
    (0x0590, 0x06FF),
    (0x3000, 0x30FF),
    (0xFE00, 0xFE0F),
    (0x1F300, 0x1F6FF),
    (0xE000, 0xE0FF),
    (0xFFF0, 0xFFFF),
]


def random_unicode(rng: random.Random, max_len: int = 120) -> str:
    out = []
    for _ in range(rng.randint(0, max_len)):
        lo, hi = rng.choice(_UNICODE_RANGES)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def _option(rng: random.Random) -> str:
    spec = rng.choice(OPTIONS)
    name = spec.name if rng.random() < 0.85 else rng.choice([spec.name.upper(), spec.name[:-1], spec.name + "x"])
    flag = rng.choice(_DASHES) + name
    if rng.random() < 0.5:
        value = rng.choice(_VALUES)
        return f"{flag}={value}" if rng.random() < 0.3 else f"{flag} {value}"
    return flag


_GOOD_VALUES = {
    "postcopy-after": ["30s", "2m"], "parallel": ["", "4"], "max-downtime": ["300", "500ms", "1s"],
    "bandwidth": ["500", "2G", "800M"], "copy-storage": ["all", "inc"], "timeout": ["10m", "1h"],
    "reason": ['"CHG-1234 patching"', "maintenance"], "limit": ["10"],
}  # fmt: skip


def valid_text(rng: random.Random) -> str:
    """A /migrate text the grammar accepts (mostly): a migration, plan, status, history, hosts, help, cancel."""
    # Fresh VM names too: a request for a VM with an unfinished job is refused before any work is done.
    vm = rng.choice(_VMS[:7]) if rng.random() < 0.5 else f"vm{rng.randint(1, 100_000)}"
    host = rng.choice(_HOSTS[:4])
    roll = rng.random()
    if roll < 0.55:
        words = [rng.choice(["", "", "plan"]), vm, "to", host]
        for spec in rng.sample(OPTIONS, rng.choice([0, 0, 1, 2])):
            if spec.name == "limit":
                continue
            value = rng.choice(_GOOD_VALUES.get(spec.name, [""]))
            words.append(f"--{spec.name} {value}".strip())
        return " ".join(w for w in words if w)
    return rng.choice([
        f"status {vm}", f"status {rng.randint(1, 60)}", "status", f"history {host}", f"history {vm} --limit 5",
        "hosts", "help", "help options", f"cancel {rng.randint(1, 60)}", f"cancel #{rng.randint(1, 60)}",
    ])  # fmt: skip


def grammar_text(rng: random.Random) -> str:
    """A /migrate text built from the grammar's words with hostile names and odd values, maybe mutated."""
    vm = rng.choice(_VMS + _HOSTILE) if rng.random() < 0.7 else random_unicode(rng, 20)
    words = [rng.choice(_VERBS), vm]
    if rng.random() < 0.8:
        words += [rng.choice(["to", "to", "TO", "->", "→", "onto", ""]), rng.choice(_HOSTS + _HOSTILE)]
    words += [_option(rng) for _ in range(rng.choice([0, 0, 1, 2, 3, 6]))]
    text = " ".join(w for w in words if w)
    return mutate(rng, text) if rng.random() < 0.5 else text


def mutate(rng: random.Random, text: str) -> str:
    """Grammar-blind edits: insert, delete, swap, duplicate, case flip, confusables, control characters."""
    chars = list(text)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(7)
        pos = rng.randint(0, len(chars))
        if op == 0:
            chars[pos:pos] = list(random_unicode(rng, 3))
        elif op == 1 and chars:
            del chars[min(pos, len(chars) - 1)]
        elif op == 2 and len(chars) > 1:
            i, j = rng.randrange(len(chars)), rng.randrange(len(chars))
            chars[i], chars[j] = chars[j], chars[i]
        elif op == 3:
            chars[pos:pos] = chars[: rng.randint(0, 30)]
        elif op == 4:
            chars = [c.swapcase() if rng.random() < 0.3 else c for c in chars]
        elif op == 5:
            chars[pos:pos] = list(rng.choice(["\u201c", "\u201d", "\u2014", "\u00a0", "\u200b", "\ufeff", '"', "'"]))
        else:
            chars[pos:pos] = list(rng.choice(["\n", "\r\n", "\t", "\x00", "\x1b[31m", "&", "=", "%", "+"]))
    return "".join(chars)


def migrate_text(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.35:
        return valid_text(rng)
    if roll < 0.60:
        return grammar_text(rng)
    if roll < 0.85:
        return random_unicode(rng)
    if roll < 0.97:
        return mutate(rng, grammar_text(rng) * rng.randint(2, 40))
    return rng.choice(["vm42 to hostB ", "a"]) * rng.randint(1000, 40_000)  # huge texts (<= ~600 kB)
