"""Where the target page size comes from when the stream does not say it.

Priority (decoder): explicit override, JSON ``page_size``, the
``configuration/target-page-bits`` subsection, then the architecture implied by
the machine type or RAM block names (TARGET_PAGE_BITS in target/*/cpu-param.h).
"""

from __future__ import annotations

import re

# (pattern on the machine type, page size, architecture)
_MACHINES = [
    (r"^(pc|pc-i440fx|pc-q35|q35|microvm|isapc|xenfv|xenpv|x-remote)", 4096, "x86_64"),
    (r"^(pseries|powernv|mac99|g3beige|ppce500|bamboo|ref405ep|sam460ex|40p|mpc8544ds)", 4096, "ppc64"),
    (r"^s390-ccw-virtio", 4096, "s390x"),
    (r"^(sun4u|sun4v|niagara)", 8192, "sparc64"),
    (r"^(SS-|LX|Voyager|leon3)", 4096, "sparc"),
    (r"^clipper", 8192, "alpha"),
    (r"^or1k-sim", 8192, "openrisc"),
    (r"^(malta|mips|boston|loongson3)", 4096, "mips"),
    (r"^(sifive_|spike|microchip-icicle|shakti_c)", 4096, "riscv64"),
    (r"^virt$", 4096, "riscv64"),  # riscv's virt is unversioned
    (r"^virt-\d", 4096, "aarch64"),  # arm's is versioned; ARMv7+/v8 CPUs use 4 KiB
    (r"^(sbsa-ref|raspi|xlnx-|vexpress|highbank|midway|realview|versatile|imx|mps2|musca|npcm)", 4096, "arm"),
    (r"^(hppa|B160L|C3700)", 4096, "hppa"),
    (r"^(loongson|virt-loongarch)", 4096, "loongarch64"),
    (r"^(mcf5208evb|an5206|q800|next-cube|virt-m68k)", 4096, "m68k"),
]

_BLOCKS = [
    ("pc.ram", "x86_64"),
    ("mach-virt.ram", "aarch64"),
    ("ppc_spapr.ram", "ppc64"),
    ("s390.ram", "s390x"),
    ("riscv_virt_board.ram", "riscv64"),
    ("sun4u.ram", "sparc64"),
]

_ARCH_PAGE = {"sparc64": 8192, "alpha": 8192, "openrisc": 8192}


def page_size_for(machine: str | None, block_names=()) -> tuple[int | None, str | None]:
    """(page size, architecture) implied by the machine type, else by block names."""
    if machine:
        for pattern, size, arch in _MACHINES:
            if re.match(pattern, machine):
                return size, arch
    for name, arch in _BLOCKS:
        if name in block_names:
            return _ARCH_PAGE.get(arch, 4096), arch
    return None, None
