"""Building stream elements from the grammar (construct ``build``).

Plain and slow on purpose: this is the reference builder used by tests and by
rare elements of encoders; a fast writer may be derived from the same grammar.
"""

from __future__ import annotations

from . import grammar as g

ST = g.SectionType
RamFlag = g.RamFlag


def file_header(version: int = g.QEMU_VM_FILE_VERSION, magic: int = g.QEMU_VM_FILE_MAGIC) -> bytes:
    return g.FileHeader.build({"magic": magic, "version": version})


def configuration(
    machine: str, *, target_page_bits: int | None = None, capabilities=None, uuid: bytes | None = None
) -> bytes:
    subs = []
    if target_page_bits is not None:
        subs.append(
            {"name": "configuration/target-page-bits", "version_id": 1, "body": {"target_page_bits": target_page_bits}}
        )
    if capabilities:
        subs.append(
            {"name": "configuration/capabilities", "version_id": 1, "body": {"capabilities": list(capabilities)}}
        )
    if uuid is not None:
        subs.append({"name": "configuration/uuid", "version_id": 1, "body": {"uuid": uuid}})
    return bytes([ST.CONFIGURATION]) + g.Configuration.build({"machine": machine, "subsections": subs})


def parse_configuration(element: bytes) -> dict:
    """The keyword arguments of ``configuration()`` that re-build a CONFIGURATION
    element (as copied from a capture): machine, target_page_bits, capabilities,
    uuid.  Raises ValueError when it does not parse (e.g. an unknown subsection)."""
    if not element or element[0] != ST.CONFIGURATION:
        raise ValueError("not a QEMU_VM_CONFIGURATION element")
    try:
        cfg = g.Configuration.parse(element[1:])
    except Exception as exc:  # construct's errors
        raise ValueError(str(exc)) from None
    out = {"machine": cfg.machine, "target_page_bits": None, "capabilities": [], "uuid": None}
    for sub in cfg.subsections:
        if sub.name == "configuration/target-page-bits":
            out["target_page_bits"] = sub.body.target_page_bits
        elif sub.name == "configuration/capabilities":
            out["capabilities"] = list(sub.body.capabilities)
        elif sub.name == "configuration/uuid":
            out["uuid"] = bytes(sub.body.uuid)
    return out


def section_start(section_id: int, idstr: str, instance_id: int = 0, version_id: int = 4, full: bool = False) -> bytes:
    typ = ST.FULL if full else ST.START
    return bytes([typ]) + g.SectionStartHeader.build(
        {"section_id": section_id, "idstr": idstr, "instance_id": instance_id, "version_id": version_id}
    )


def section_part(section_id: int, end: bool = False) -> bytes:
    return bytes([ST.END if end else ST.PART]) + g.SectionPartHeader.build({"section_id": section_id})


def footer(section_id: int) -> bytes:
    return bytes([ST.FOOTER]) + g.SectionFooter.build({"section_id": section_id})


def eof() -> bytes:
    return bytes([ST.EOF])


def vmdescription(json_text: bytes) -> bytes:
    return bytes([ST.VMDESCRIPTION]) + g.VmDescription.build({"json": json_text})


def command(cmd: int, body=None) -> bytes:
    """A QEMU_VM_COMMAND; ``body`` is the dict for the command's payload grammar,
    or raw payload bytes."""
    con = g.COMMAND_PAYLOADS.get(cmd)
    if isinstance(body, (bytes, bytearray)):
        raw = bytes(body)
    elif con is not None:
        raw = con.build(body or {})
    else:
        raw = b""
    return bytes([ST.COMMAND]) + g.CommandHeader.build({"cmd": cmd, "length": len(raw)}) + raw


def ram_record(
    kind: int, addr: int = 0, *, block: str | None = None, page_size: int = 4096, payload=None, flags_extra: int = 0
) -> bytes:
    """A RAM record.  ``block`` None means CONTINUE.  ``payload`` is the dict for the
    kind's payload grammar (e.g. {"data": page} or {"fill": 0})."""
    continue_ = block is None and kind in g.PAGE_KINDS
    flags = int(kind) | flags_extra | (RamFlag.CONTINUE if continue_ else 0)
    header = {"addr_flags": addr | flags, "idstr": block}
    return g.RamRecord.build(
        {"header": header, "payload": payload or {}}, page_size=page_size, ignore_shared=False, postcopy_hugepages=False
    )


def mem_size(blocks, *, page_size: int = 4096, ignore_shared: bool = False) -> bytes:
    """The MEM_SIZE record for ``blocks``: [(name, used_length[, addr])]."""
    entries = []
    for b in blocks:
        name, length = b[0], b[1]
        entries.append(
            {"idstr": name, "used_length": length, "page_size": None, "addr": b[2] if ignore_shared else None}
        )
    total = sum(e["used_length"] for e in entries)
    return g.RamRecord.build(
        {"header": {"addr_flags": total | RamFlag.MEM_SIZE, "idstr": None}, "payload": {"blocks": entries or None}},
        page_size=page_size,
        ignore_shared=ignore_shared,
        postcopy_hugepages=False,
    )


def block_record(flags: int, value: int = 0, *, device: str | None = None, data: bytes | None = None) -> bytes:
    """A block migration record: ``value`` is the chunk's first sector (DEVICE_BLOCK)
    or the percentage (PROGRESS); ``data`` the 1 MiB chunk unless ZERO_BLOCK."""
    return g.BlockRecord.build({"value_flags": (value << g.BLOCK_SECTOR_BITS) | flags, "device": device, "data": data})


def dirty_bitmap_record(
    flags: int,
    *,
    node: str | None = None,
    bitmap: str | None = None,
    granularity: int | None = None,
    bitmap_flags: int = 0,
    start_sector: int | None = None,
    nr_sectors: int = 0,
    data: bytes | None = None,
) -> bytes:
    """A dirty-bitmap record (one flags byte, as QEMU sends): names when given, a START
    with ``granularity``, or BITS from ``start_sector`` with ``data`` unless ZEROES."""
    F = g.DirtyBitmapFlag
    flags |= (F.DEVICE_NAME if node is not None else 0) | (F.BITMAP_NAME if bitmap is not None else 0)
    bits = None
    if start_sector is not None:
        bits = {
            "start_sector": start_sector,
            "nr_sectors": nr_sectors,
            "buffer_size": None if flags & F.ZEROES else len(data or b""),
        }
    return g.DirtyBitmapRecord.build(
        {
            "flag_bytes": {"first": flags, "more": None},
            "node": node,
            "bitmap": bitmap,
            "start": {"granularity": granularity, "bitmap_flags": bitmap_flags} if granularity is not None else None,
            "bits": bits,
            "data": data if bits is not None and not flags & F.ZEROES else None,
        }
    )
