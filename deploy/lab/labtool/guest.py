"""Builds the test guest (deploy/lab/guest: a 32-bit multiboot ELF) and installs it into the lab."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .config import Paths
from .proc import LabError, run, say

GUEST_SRC = Path(__file__).resolve().parent.parent / "guest"
SOURCES = ("dirtier.c", "boot.S", "link.ld")
CFLAGS = (
    "-m32",
    "-O2",
    "-ffreestanding",
    "-fno-pic",
    "-fno-pie",
    "-fno-stack-protector",
    "-fno-asynchronous-unwind-tables",
    "-mgeneral-regs-only",
    "-nostdlib",
    "-Wall",
    "-Wextra",
    "-Werror",
)


def _build(out: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="lab-guest-") as tmp:
        t = Path(tmp)
        run(["gcc", *CFLAGS, "-c", str(GUEST_SRC / "dirtier.c"), "-o", str(t / "dirtier.o")])
        run(["gcc", "-m32", "-c", str(GUEST_SRC / "boot.S"), "-o", str(t / "boot.o")])
        run(
            [
                "ld",
                "-m",
                "elf_i386",
                "--no-warn-rwx-segments",
                "-z",
                "max-page-size=0x1000",
                "-T",
                str(GUEST_SRC / "link.ld"),
                "-nostdlib",
                "-o",
                str(t / "dirtier.elf"),
                str(t / "boot.o"),
                str(t / "dirtier.o"),
            ]
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(t / "dirtier.elf", out.with_suffix(".tmp"))
        out.with_suffix(".tmp").replace(out)


def ensure_guest(paths: Paths) -> Path:
    """Build into the cache when a source is newer than the cached ELF; copy it to $LAB_ROOT/images.

    The build output lives next to the capabilities cache (not in the repository, not in $LAB_ROOT,
    which teardown wipes), so a cached lab-up does not run the compiler."""
    built = paths.capcache / "guest" / "dirtier.elf"
    newest_src = max((GUEST_SRC / s).stat().st_mtime for s in SOURCES)
    if not built.exists() or built.stat().st_mtime < newest_src:
        say(f"building the test guest from {GUEST_SRC}")
        _build(built)
    if not built.exists():
        raise LabError(f"the guest build produced no {built}")
    paths.images.mkdir(parents=True, exist_ok=True)
    if not paths.kernel.exists() or paths.kernel.read_bytes() != built.read_bytes():
        shutil.copyfile(built, paths.kernel)
    return paths.kernel
