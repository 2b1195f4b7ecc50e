"""Where each RAM block's bytes are in the guest-physical address space: the one home
of QEMU's memory layout rules (what ``dump``, ``info``, the GPA reader and encoding
from physical images use).

A block is placed in one or more pieces: ``PhysRange(gpa, size, block, offset)``
says that ``size`` bytes of ``block`` from ``offset`` are at guest-physical ``gpa``.
The rules, by machine (QEMU 7.2 to 11 sources cited per rule):

- x86 ``pc`` (hw/i386/pc_piix.c): RAM below 4 GiB is max-ram-below-4g (3.5 GiB by
  default); when the RAM is at least that big and the machine has gigabyte_align
  (pc-i440fx-2.0 and later) the low part is 3 GiB.  ``q35`` (hw/i386/pc_q35.c): the
  low part is 2 GiB when the RAM is at least 0xB0000000, else all of it.  ``microvm``
  (hw/i386/microvm.c): 0xE0000000 when the RAM is larger.  The rest is at 4 GiB
  (hw/i386/pc.c pc_memory_init), or at 1 TiB for AMD CPUs on machines 7.1 and later
  when the address space would reach the HyperTransport hole (0xFD00000000): the
  stream does not name the CPU vendor, so that case needs ``cpu_vendor``.
- NUMA memdevs (hw/core/numa.c numa_init_memdev_container): the backends are packed
  in node order into the one RAM container, which is then split as above, so a
  memdev may straddle the PCI hole.  The stream does not carry the node order; it is
  the backend ids' natural order (m0, m1, ..., m10) unless ``numa_order`` says.
- aarch64 ``virt`` (hw/arm/virt.c, VIRT_MEM): RAM at 0x40000000; riscv64 ``virt``
  (hw/riscv/virt.c): 0x80000000; ppc64 ``pseries``, s390x: 0.
- x86 ``pc.bios`` (hw/i386/x86.c x86_bios_rom_init): at 4 GiB minus its size.
- With x-ignore-shared, MEM_SIZE carries each block's MemoryRegion address: for
  NUMA memdevs that is their offset in the RAM container, which gives the node
  order.  (For ROMs and fw_cfg blobs it is 0 or an overlay address: not used.)
- Everything else (device ROMs, video RAM, DIMMs, whose address is a device
  property) is left out unless ``overrides`` (``--map BLOCK=GPA``, or
  ``BLOCK:OFFSET=GPA`` for a piece from OFFSET on) places it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from collections.abc import Sequence

from ..errors import UsageError
from ..record import record
from ..wire.pagesize import page_size_for

GiB = 1 << 30
_4G = 4 * GiB
AMD_HT_START = 0xFD_0000_0000  # hw/i386/pc.c
AMD_ABOVE_1TB_START = 1 << 40

#: The block of the machine's main RAM, by machine kind (MachineClass default_ram_id).
_MAIN_RAM = ("pc.ram", "microvm.ram", "mach-virt.ram", "riscv_virt_board.ram", "ppc_spapr.ram", "s390.ram")
#: Where the main RAM (or the NUMA container) starts, by architecture, for machines
#: without a hole below 4 GiB.
_RAM_BASE = {"aarch64": 0x4000_0000, "riscv64": 0x8000_0000, "ppc64": 0, "s390x": 0}


@record
class PhysRange:
    gpa: int
    size: int
    block: str
    offset: int  # in the block

    @property
    def end(self) -> int:
        return self.gpa + self.size

    def as_dict(self) -> dict:
        return {"gpa": self.gpa, "size": self.size, "block": self.block, "offset": self.offset}


@record
class BlockInfo:
    """What the layout needs of a RAM block: its name, used length and, with
    x-ignore-shared, the address MEM_SIZE carried."""

    name: str
    length: int
    addr: int | None = None


@record(frozen=False)
class PhysicalMap:
    machine: str | None
    ranges: list[PhysRange]  # ascending by gpa, never overlapping
    unmapped: list[str]  # blocks with no guest-physical address (device ROMs, video RAM, ...)
    rule: str  # the rule that placed the main RAM, in words

    def locate(self, gpa: int) -> PhysRange | None:
        """The range holding ``gpa``, or None (a hole)."""
        lo, hi = 0, len(self.ranges)
        while lo < hi:
            mid = (lo + hi) // 2
            r = self.ranges[mid]
            if gpa < r.gpa:
                hi = mid
            elif gpa >= r.end:
                lo = mid + 1
            else:
                return r
        return None

    def pieces(self, block: str) -> list[PhysRange]:
        return sorted((r for r in self.ranges if r.block == block), key=lambda r: r.offset)

    @property
    def ram_size(self) -> int:
        return sum(r.size for r in self.ranges)

    def as_dict(self) -> dict:
        return {"rule": self.rule, "ranges": [r.as_dict() for r in self.ranges], "unmapped": self.unmapped}

    def describe(self) -> list[str]:
        """One line a range: ``0x0-0xbfffffff  pc.ram +0x0``."""
        return [f"0x{r.gpa:x}-0x{r.end - 1:x}  {r.block} +0x{r.offset:x}" for r in self.ranges]


def parse_map_options(values: Iterable[str] | None) -> dict[tuple[str, int], int]:
    """``--map BLOCK=GPA`` / ``--map BLOCK:OFFSET=GPA`` values -> {(block, offset): gpa}."""
    out: dict[tuple[str, int], int] = {}
    for v in values or ():
        m = re.fullmatch(r"([^=:]+)(?::([^=]+))?=(.+)", v.strip())
        if not m:
            raise UsageError(f"--map {v!r}: expected BLOCK=GPA or BLOCK:OFFSET=GPA (e.g. pc.ram=0x0)")
        name = m.group(1)
        try:
            off = int(m.group(2), 0) if m.group(2) else 0
            gpa = int(m.group(3), 0)
        except ValueError:
            raise UsageError(f"--map {v!r}: OFFSET and GPA must be numbers (0x... for hex)") from None
        if off < 0 or gpa < 0 or gpa >= 1 << 64:
            raise UsageError(f"--map {v!r}: OFFSET and GPA must be in 0..2^64-1")
        if (name, off) in out:
            raise UsageError(f"--map {v!r}: {name} at offset 0x{off:x} given twice")
        out[(name, off)] = gpa
    return out


def _natural_key(name: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def _is_memdev(name: str) -> bool:
    """Could this block be a memory backend (a NUMA memdev)?  Backend ids are plain
    QOM ids (no '/'); device RAM is named ``<device path>/<name>`` and firmware has
    fixed names."""
    return "/" not in name and not re.search(r"(\.rom|\.bios|vram|flash\d*)$", name)


def _version(machine: str) -> tuple[int, int] | None:
    m = re.search(r"-(\d+)\.(\d+)$", machine)
    return (int(m.group(1)), int(m.group(2))) if m else None


def physical_map(
    machine: str | None,
    blocks: Sequence[BlockInfo],
    page_size: int = 4096,
    *,
    overrides: dict[tuple[str, int], int] | None = None,
    numa_order: Sequence[str] | None = None,
    cpu_vendor: str | None = None,
) -> PhysicalMap:
    """The guest-physical placement of ``blocks`` on ``machine``; UsageError (one line)
    when the stream cannot tell and no override says, or when ranges overlap."""
    overrides = dict(overrides or {})
    by_name = {b.name: b for b in blocks}
    for (name, off), gpa in overrides.items():
        b = by_name.get(name)
        if b is None:
            raise UsageError(f"--map {name}=0x{gpa:x}: no RAM block {name} (blocks: {', '.join(by_name)})")
        if off % page_size or gpa % page_size:
            raise UsageError(f"--map {name}: offset 0x{off:x} and GPA 0x{gpa:x} must be multiples of {page_size}")
        if off >= max(b.length, 1):
            raise UsageError(f"--map {name}:0x{off:x}: offset beyond the block's 0x{b.length:x} bytes")
    placed_by_user = {name for name, _ in overrides}
    _, arch = page_size_for(machine, [b.name for b in blocks])
    mach = machine or ""
    ranges: list[PhysRange] = []
    rule = "none"

    # The main RAM: one block, or the NUMA memdevs in node order.
    named = [b for b in blocks if b.name in _MAIN_RAM]
    main = [b for b in named if b.name not in placed_by_user]
    if numa_order:
        missing = [n for n in numa_order if n not in by_name]
        if missing:
            raise UsageError(f"--numa: no RAM block {', '.join(missing)}")
        main = [by_name[n] for n in numa_order]
    elif not named:
        main = [b for b in blocks if _is_memdev(b.name) and b.name not in placed_by_user]
        if main and all(b.addr is not None for b in main):
            # x-ignore-shared: MEM_SIZE carries each memdev's offset in the RAM container.
            main.sort(key=lambda b: b.addr or 0)
        else:
            main.sort(key=lambda b: _natural_key(b.name))
    ram_size = sum(b.length for b in main)
    if main and arch == "x86_64":
        below, high_base, rule = _x86_split(mach, ram_size, cpu_vendor)
        ranges += _pack(main, [(0, 0, below), (below, high_base, ram_size - below)])
    elif main and arch in _RAM_BASE:
        base = _RAM_BASE[arch]
        ranges += _pack(main, [(0, base, ram_size)])
        rule = f"{arch}: RAM at 0x{base:x}"
    elif main:
        names = ", ".join(b.name for b in main)
        raise UsageError(
            f"machine {machine or '(unknown)'}: no layout rule for RAM block(s) {names}; "
            "place them with --map BLOCK=GPA"
        )
    if len(main) > 1:
        rule += f"; NUMA memdevs packed in the order {', '.join(b.name for b in main)}"
    placed = {b.name for b in main}

    # Firmware QEMU maps at a fixed place; blocks whose address the stream carries.
    for b in blocks:
        if b.name in placed or b.name in placed_by_user or not b.length:
            continue
        if arch == "x86_64" and b.name == "pc.bios" and b.length <= GiB:
            ranges.append(PhysRange(_4G - b.length, b.length, b.name, 0))
            placed.add(b.name)

    # --map: pieces of a block from each OFFSET to the next one (or the block's end).
    for name in sorted(placed_by_user):
        b = by_name[name]
        offs = sorted((off, gpa) for (n, off), gpa in overrides.items() if n == name)
        for k, (off, gpa) in enumerate(offs):
            end = offs[k + 1][0] if k + 1 < len(offs) else b.length
            ranges.append(PhysRange(gpa, end - off, name, off))
        placed.add(name)

    ranges = [r for r in ranges if r.size > 0]
    ranges.sort(key=lambda r: r.gpa)
    for a, c in zip(ranges, ranges[1:]):
        if c.gpa < a.end:
            raise UsageError(
                f"guest-physical ranges overlap: {a.block} at 0x{a.gpa:x}-0x{a.end - 1:x} and "
                f"{c.block} at 0x{c.gpa:x}-0x{c.end - 1:x} (check --map)"
            )
    for r in ranges:
        if r.end > 1 << 64:
            raise UsageError(f"{r.block} at 0x{r.gpa:x}: ends beyond the 64-bit address space")
    unmapped = [b.name for b in blocks if b.name not in placed and b.length]
    return PhysicalMap(machine, ranges, unmapped, rule)


def _x86_split(machine: str, ram_size: int, cpu_vendor: str | None) -> tuple[int, int, str]:
    """(bytes below 4 GiB, where the rest starts, the rule in words)."""
    version = _version(machine)
    if machine.startswith("pc-q35") or machine.startswith("q35"):
        # hw/i386/pc_q35.c pc_q35_init
        below = 0x8000_0000 if ram_size >= 0xB000_0000 else 0xB000_0000
        rule = "q35: 2 GiB below 4 GiB when RAM >= 2.75 GiB"
        hole64 = 1 << 35  # Q35_PCI_HOST_HOLE64_SIZE_DEFAULT
    elif machine.startswith("microvm"):
        below = 0xE000_0000  # hw/i386/microvm.c MICROVM_MAX_BELOW_4G
        rule = "microvm: 3.5 GiB below 4 GiB"
        hole64 = 0
    else:
        # hw/i386/pc_piix.c pc_init1: max-ram-below-4g defaults to 3.5 GiB; gigabyte_align
        # (pc-i440fx-2.0 and later) lowers it to 3 GiB when the RAM does not fit.
        below = 0xE000_0000
        gigabyte_align = version is None or version >= (2, 0)
        if ram_size >= below and gigabyte_align:
            below = 0xC000_0000
        rule = "pc: 3 GiB below 4 GiB (gigabyte_align)" if gigabyte_align else "pc before 2.0: 3.5 GiB below 4 GiB"
        hole64 = 1 << 31  # i440fx DEFAULT_PCI_HOLE64_SIZE
    below = min(below, ram_size)
    above = ram_size - below
    if not above:
        rule = f"{rule.split(':')[0]}: all RAM below 4 GiB"
    high = _4G
    # hw/i386/pc.c pc_memory_init: AMD vCPUs (machine 7.1+) move RAM above 4 GiB to 1 TiB
    # when the highest used address (the 64-bit PCI hole's end) reaches the HT range.
    amd_rule = above and (version is None or version >= (7, 1)) and not machine.startswith("microvm")
    if amd_rule and _round_up(_4G + above, GiB) + hole64 >= AMD_HT_START:
        if cpu_vendor is None:
            raise UsageError(
                f"{machine}: with {ram_size >> 30} GiB of RAM the layout depends on the CPU vendor "
                "(AMD moves RAM above 4 GiB to 1 TiB): give --cpu-vendor amd|intel"
            )
        if cpu_vendor == "amd":
            high = AMD_ABOVE_1TB_START
            rule += "; AMD: RAM above 4 GiB starts at 1 TiB"
    return below, high, rule


def _round_up(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def _pack(blocks: Sequence[BlockInfo], windows: list[tuple[int, int, int]]) -> list[PhysRange]:
    """Pack ``blocks`` back to back into one container and map the container's
    windows ``(container offset, gpa, size)``; a block may straddle two windows."""
    out = []
    at = 0
    for b in blocks:
        start, end = at, at + b.length
        for woff, wgpa, wsize in windows:
            lo, hi = max(start, woff), min(end, woff + wsize)
            if lo < hi:
                out.append(PhysRange(wgpa + lo - woff, hi - lo, b.name, lo - start))
        at = end
    return out


def blocks_from_manifest(doc: dict) -> list[BlockInfo]:
    """BlockInfo for each block of an extract manifest (``name``, ``length``, ``addr``)."""
    return [BlockInfo(b["name"], int(b["length"]), b.get("addr")) for b in doc.get("blocks", [])]


def physical_map_doc(doc: dict) -> dict:
    """``info``'s physical map: the default layout of the stream's RAM blocks, or why
    there is none (then ``dump`` needs --map)."""
    blocks = [BlockInfo(b["name"], b["length"], b.get("addr")) for b in doc.get("ram_blocks", ())]
    try:
        return physical_map(doc.get("machine"), blocks, doc.get("page_size") or 4096).as_dict()
    except UsageError as exc:
        return {"error": str(exc)}
