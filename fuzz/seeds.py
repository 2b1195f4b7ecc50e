"""Seed inputs for the fuzzers: small, valid streams that reach every element kind.

Built with the writer (so from the grammar), plus the first bytes of each real
sample when the samples are present.  Coverage-guided fuzzing mutates these; the
structure-aware fuzzer (tests/unit/test_fuzz.py) builds its own.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path

from migstream.wire import build as w
from migstream.wire import grammar as g

F = g.RamFlag
C = g.Command
PS = 4096
BLOCKS = (("pc.ram", 8 * PS), ("pc.bios", 2 * PS))
SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def _page(kind, addr, block=None, **payload):
    return w.ram_record(kind, addr, block=block, payload=payload)


def ram_records() -> bytes:
    """One record of every page kind, with and without CONTINUE, and the markers."""
    out = _page(F.PAGE, 0, "pc.ram", data=bytes(range(256)) * (PS // 256))
    out += _page(F.ZERO, PS, None, fill=0)
    out += _page(F.ZERO, 2 * PS, None, fill=0x55)
    out += _page(F.XBZRLE, 0, None, encoding=1, data=b"\x00\x02ab\x10\x01c")
    out += _page(F.COMPRESS_PAGE, 3 * PS, None, data=zlib.compress(b"\x11" * PS))
    out += w.ram_record(F.MULTIFD_FLUSH)
    out += b"".join(_page(F.ZERO, (4 + i) * PS, None, fill=0) for i in range(4))
    out += _page(F.PAGE, 0, "pc.bios", data=b"\xaa" * PS)
    return out


def full_stream(*, footers: bool = True, description: bool = True) -> bytes:
    foot = w.footer if footers else (lambda sid: b"")
    out = w.file_header() + w.configuration("pc-i440fx-7.2", target_page_bits=12, capabilities=["x-ignore-shared"][:0])
    out += w.command(C.OPEN_RETURN_PATH) + w.command(C.PING, {"value": 1})
    out += w.section_start(2, "ram") + w.mem_size(BLOCKS) + w.ram_record(F.EOS) + foot(2)
    out += w.section_part(2) + ram_records() + w.ram_record(F.EOS) + foot(2)
    out += w.section_part(2, end=True) + w.ram_record(F.EOS) + foot(2)
    out += w.section_start(3, "timer", version_id=2, full=True) + bytes(range(24)) + foot(3)
    out += w.section_start(4, "cpu_common", instance_id=0, version_id=1, full=True) + b"\x00\x01" + foot(4)
    out += w.eof()
    if description:
        desc = {
            "page_size": PS,
            "devices": [
                {
                    "name": "timer",
                    "instance_id": 0,
                    "vmsd_name": "timer",
                    "version": 2,
                    "fields": [{"name": "x", "type": "buffer", "size": 24}],
                },
                {
                    "name": "cpu_common",
                    "instance_id": 0,
                    "vmsd_name": "cpu_common",
                    "version": 1,
                    "fields": [{"name": "halted", "type": "uint16", "size": 2}],
                },
            ],
        }
        out += w.vmdescription(json.dumps(desc).encode())
    return out


def postcopy_stream() -> bytes:
    out = w.file_header() + w.configuration("pc-q35-7.2")
    out += w.command(C.OPEN_RETURN_PATH)
    out += w.command(C.POSTCOPY_ADVISE, {"ram_pagesize_summary": PS, "target_page_size": PS})
    out += w.section_start(2, "ram") + w.mem_size(BLOCKS) + w.ram_record(F.EOS) + w.footer(2)
    out += w.section_part(2) + _page(F.PAGE, 0, "pc.ram", data=b"\x01" * PS) + w.ram_record(F.EOS) + w.footer(2)
    out += w.command(
        C.POSTCOPY_RAM_DISCARD,
        {"version": 0, "idstr": "pc.ram", "terminator": 0, "ranges": [{"start": 0, "length": 2}]},
    )
    inner = w.command(C.POSTCOPY_LISTEN)
    inner += w.section_start(3, "timer", version_id=2, full=True) + bytes(8) + w.footer(3)
    inner += w.command(C.PING, {"value": g.QEMU_VM_PING_PACKAGED_LOADED}) + w.command(C.POSTCOPY_RUN)
    out += w.command(C.PACKAGED, {"length": len(inner)}) + inner
    out += w.section_part(2) + _page(F.ZERO, PS, None, fill=0) + w.ram_record(F.EOS) + w.footer(2)
    out += w.command(C.RECV_BITMAP, {"idstr": "pc.ram"})
    out += w.section_part(2, end=True) + w.ram_record(F.EOS) + w.footer(2) + w.eof()
    return out


def seed_streams(sample_head: int = 16384) -> dict[str, bytes]:
    seeds = {
        "full": full_stream(),
        "no-footers": full_stream(footers=False, description=False),
        "postcopy": postcopy_stream(),
        "config-subsections": w.file_header()
        + w.configuration("virt-7.2", target_page_bits=12, capabilities=["x-ignore-shared"], uuid=bytes(range(16)))
        + w.eof(),
    }
    if (SAMPLES / "samples.json").exists():
        import zstandard

        for s in json.loads((SAMPLES / "samples.json").read_text()):
            if not s["stream"].endswith(".zst"):
                continue  # not a zstd-compressed QEMU stream (e.g. a libvirt save image)
            with open(SAMPLES / s["stream"], "rb") as f:
                head = zstandard.ZstdDecompressor().stream_reader(f).read(sample_head)
            if not head.startswith(b"QEVM"):
                continue  # a libvirt save image wraps the stream: the decoder's seeds are streams
            seeds["head-" + s["name"]] = head
            tail = _device_tail(SAMPLES / s["stream"])
            if tail:
                seeds["tail-" + s["name"]] = tail
    return seeds


def _device_tail(path: Path, limit: int = 1 << 17) -> bytes | None:
    """Header and configuration of a real sample followed by its device sections,
    EOF and VMDESCRIPTION (the RAM sections left out): a valid stream QEMU could
    have sent for a VM without live RAM, made of real device state."""
    import zstandard

    from migstream.decode.decoder import StreamDecoder
    from migstream.events import Configuration
    from migstream.events import SectionStart

    with open(path, "rb") as f:
        data = zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True).read()
    dec = StreamDecoder()
    dec.feed(data)
    dec.feed(b"")
    config_end = first_full = None
    try:
        for ev in dec:
            if isinstance(ev, Configuration):
                config_end = dec.offset
            if isinstance(ev, SectionStart) and ev.type == g.SectionType.FULL and dec.ram_complete:
                first_full = ev.offset
                break
    except Exception:
        return None
    if config_end is None or first_full is None:
        return None
    tail = data[first_full:]
    if len(tail) > limit:
        return None
    return data[:config_end] + tail


def write_corpus(directory: Path, mode_byte: bool = False) -> int:
    """One file per seed; ``mode_byte`` prefixes the harness's feeding-mode byte
    (0: the whole input at once)."""
    directory.mkdir(parents=True, exist_ok=True)
    seeds = seed_streams()
    for name, data in seeds.items():
        (directory / f"seed-{name}").write_bytes(b"\0" * mode_byte + data)
    return len(seeds)
