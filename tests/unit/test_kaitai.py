"""Three-way differential tests: the Kaitai parser generated from
formats/qemu_migration.ksy, plain construct parsing of migstream's grammar
(tests/support/reference.py) and the fast decoder produce the same records, on every real
sample and on generated streams.  Plus: the committed parser is what the spec
compiles to."""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
import tempfile
import zlib

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st
from kaitaistruct import BytesIO
from kaitaistruct import KaitaiStream
from test_fastpath import xbzrle_delta

from migstream.wire import build as w
from migstream.wire import grammar as g
from support.reference import decoder_records
from support.reference import reference_records
from support.samples import ROOT
from support.samples import load_samples
from support.samples import raw_stream
from support.samples import sample_ids

# formats/ is the language-neutral spec, not part of the package: its generated parser
# is loaded from the checkout.
sys.path.insert(0, str(ROOT / "formats"))
from qemu_migration import QemuMigration as K  # noqa: E402

F = g.RamFlag
C = g.Command
FORMATS = ROOT / "formats"


# --- the Kaitai side of the comparison ---------------------------------------------


def kaitai_records(
    data: bytes, page_size: int = 4096, *, ignore_shared: bool = False, mapped_ram: bool = False
) -> list:
    """The items of reference.reference_records, read from the Kaitai object tree."""
    m = K(page_size, ignore_shared, False, mapped_ram, KaitaiStream(BytesIO(data)))
    out: list = []
    _walk(m.elements, out, top=True)
    if m.has_vmdescription:
        # The VMDESCRIPTION follows the one-byte EOF element.
        out.append(("vmdescription", m.elements[-1].ofs + 1, bytes(m.vmdescription.json)))
    return out


def _walk(elements, out: list, top: bool) -> None:
    for e in elements:
        tag = e.tag
        if tag == K.SectionType.eof:
            if top:
                out.append(("eof", e.ofs))
        elif tag == K.SectionType.configuration:
            out.append(("configuration", e.ofs, e.configuration.machine))
        elif tag == K.SectionType.command:
            c = e.command
            out.append(("command", e.ofs, int(c.cmd), c.len))
            if c.cmd == K.CommandType.packaged:
                pkg = c.package
                if pkg.length:
                    _walk(pkg.elements, out, top=False)
                out.append(("package_end", pkg.start + pkg.length))
        else:
            s = e.section
            out.append(("section", e.ofs, int(tag), s.section_id))
            if s.is_ram:
                for r in s.ram.records:
                    if r.is_page:
                        value = r.body.fill if r.kind == K.RamFlag.zero else bytes(r.body.data)
                        out.append((r.ofs, r.flags, r.block, r.addr, value))
                    elif r.kind == K.RamFlag.mem_size:
                        blocks = r.body.blocks if r.addr else ()
                        out.append(("mem_size", r.ofs, tuple((b.idstr.value, b.used_length) for b in blocks)))
                    else:
                        out.append(("marker", r.ofs, r.flags))
            elif s.is_dirty_bitmap:
                for r in s.dirty_bitmap.records:
                    node, bitmap = getattr(r, "node", None), getattr(r, "bitmap", None)
                    out.append(
                        (
                            "dirty_bitmap",
                            r.ofs,
                            r.flags,
                            node.value if node is not None else None,
                            bitmap.value if bitmap is not None else None,
                            getattr(r, "granularity", None),
                            getattr(r, "start_sector", None),
                            bytes(getattr(r, "data", b"")),
                        )
                    )
            elif s.is_block:
                for r in s.block.records:
                    device, data = getattr(r, "device", None), getattr(r, "data", None)  # absent when not sent
                    out.append(
                        (
                            "block",
                            r.ofs,
                            r.flags,
                            r.value,
                            device.value if device is not None else None,
                            bytes(data) if data is not None else b"",
                        )
                    )
            else:
                out.append(("device", s.device_state_framing.start, s.section_id, len(s.device_state)))


def three_way(data: bytes, page_size: int = 4096, decoder_page_size: int | None = None, **caps):
    ref = reference_records(data, page_size, **caps)
    assert kaitai_records(data, page_size, **caps) == ref
    assert decoder_records(data, page_size=decoder_page_size or page_size) == ref
    return ref


# --- real samples ------------------------------------------------------------------


def qemu_stream(sample: dict) -> bytes:
    """The QEMU stream of a sample; a libvirt save image is unwrapped (header, domain
    XML, compression) by migstream's source, which the libvirt tests check."""
    data = raw_stream(sample)
    if not data.startswith(b"LibvirtQemud"):
        return data
    from migstream.containers.sources import StreamSource

    with tempfile.NamedTemporaryFile() as tmp:
        tmp.write(data)
        tmp.flush()
        with StreamSource(tmp.name) as src:
            return b"".join(bytes(c) for c in src.chunks())


@pytest.mark.parametrize("name", sample_ids())
def test_samples_three_way(name):
    sample = next(s for s in load_samples() if s["name"] == name)
    data = qemu_stream(sample)
    caps = set(sample.get("capabilities") or ())
    # The decoder finds the page size and the capabilities itself.
    items = three_way(
        data, 4096, decoder_page_size=None, ignore_shared="x-ignore-shared" in caps, mapped_ram="mapped-ram" in caps
    )
    kinds = {i[0] if isinstance(i[0], str) else "record" for i in items}
    assert {"configuration", "section", "mem_size", "marker", "device", "eof"} <= kinds
    records = sum(1 for i in items if not isinstance(i[0], str))
    if "mapped-ram" in caps:
        assert records == 0  # pages live in the file's page regions, not in records
    elif sample.get("channels"):
        pass  # normal pages travel in the channels; zero pages too from QEMU 9 on
    elif "x-ignore-shared" in caps:
        assert records > 100  # pc.ram is shared, not sent; firmware blocks are
    else:
        assert records > 1000


def test_postcopy_sample_has_a_package():
    data = raw_stream(next(s for s in load_samples() if s["name"] == "x86-postcopy"))
    items = kaitai_records(data)
    assert any(i[0] == "package_end" for i in items)
    assert any(i[0] == "command" and i[2] == C.POSTCOPY_RAM_DISCARD for i in items)


# --- generated streams -------------------------------------------------------------

BLOCKS = [("pc.ram", 64), ("pc.bios", 16), ("/rom@etc/acpi/tables", 8)]  # lengths in pages

record_op = st.tuples(
    st.sampled_from(["page", "zero", "zero", "xbzrle", "compress", "flush"]),
    st.sampled_from([0, 0, 1, 2]),
    st.integers(0, 100),
)
run_op = st.tuples(
    st.sampled_from(["page", "zero"]), st.sampled_from([0, 1]), st.integers(0, 60), st.integers(2, 70)
).map(lambda t: [(t[0], t[1], t[2] + i) for i in range(t[3])])
ram_part = st.lists(st.one_of(record_op.map(lambda r: [r]), run_op), max_size=6).map(
    lambda groups: ("ram", [r for grp in groups for r in grp])
)
device = st.tuples(
    st.just("device"),
    st.sampled_from(["timer", "cpu_common", "0000:00:02.0/e1000", "ram"]),
    st.integers(0, 3),
    st.binary(max_size=200),
)
command = st.tuples(
    st.just("command"),
    st.sampled_from(
        # (Not POSTCOPY_LISTEN/RUN: the loader stops reading a package at RUN and a
        # package that ends after LISTEN without RUN fails (decode/commands.py), so a
        # plain parse of their random placement is no reference.)
        ["ping", "open_return_path", "advise", "advise0", "discard", "recv_bitmap", "switchover"]
    ),
)
simple = st.one_of(ram_part, device, command)
packaged = st.tuples(
    st.just("packaged"),
    st.lists(st.one_of(device, command, ram_part), max_size=4),
    st.booleans(),
    st.binary(max_size=8),
)
element = st.one_of(simple, simple, packaged)


class _Builder:
    def __init__(self, seed: int, page_size: int) -> None:
        self.rnd = random.Random(seed)
        self.ps = page_size
        self.blocks = [(n, pages * page_size) for n, pages in BLOCKS]
        self.last_block = None
        self.next_sid = 10

    def ram_part(self, records, end=False) -> bytes:
        ps, rnd = self.ps, self.rnd
        out = bytearray(w.section_part(2, end=end))
        for kind, bidx, page in records:
            name, length = self.blocks[bidx]
            addr = (page % (length // ps)) * ps
            if kind == "flush":
                out += w.ram_record(F.MULTIFD_FLUSH, page_size=ps)
                continue
            block = None if name == self.last_block else name
            self.last_block = name
            payload: dict[str, int | bytes]  # the record's fields by grammar name
            if kind == "page":
                payload, k = {"data": rnd.randbytes(ps)}, F.PAGE
            elif kind == "zero":
                payload, k = {"fill": rnd.choice([0, 0, 0x55])}, F.ZERO
            elif kind == "xbzrle":
                payload, k = {"encoding": 1, "data": xbzrle_delta(rnd, ps)}, F.XBZRLE
            else:
                payload, k = {"data": zlib.compress(rnd.randbytes(32) * (ps // 32))}, F.COMPRESS_PAGE
            out += w.ram_record(k, addr, block=block, page_size=ps, payload=payload)
        return bytes(out + w.ram_record(F.EOS, page_size=ps) + w.footer(2))

    def device(self, idstr, instance, payload) -> bytes:
        sid = self.next_sid
        self.next_sid += 1
        needle = b"\x7e" + sid.to_bytes(4, "big")
        payload = payload.replace(needle, b"\x7e\xff\xff\xff\xff")  # no false footer inside
        return w.section_start(sid, idstr, instance_id=instance, version_id=1, full=True) + payload + w.footer(sid)

    def command(self, kind) -> bytes:
        if kind == "ping":
            return w.command(C.PING, {"value": self.rnd.getrandbits(32)})
        if kind == "advise":
            return w.command(C.POSTCOPY_ADVISE, {"ram_pagesize_summary": self.ps, "target_page_size": self.ps})
        if kind == "advise0":
            return w.command(C.POSTCOPY_ADVISE, b"")
        if kind == "discard":
            n = self.rnd.randint(1, 3)
            return w.command(
                C.POSTCOPY_RAM_DISCARD,
                {
                    "version": 0,
                    "idstr": "pc.ram",
                    "terminator": 0,
                    "ranges": [{"start": i * 4, "length": 2} for i in range(n)],
                },
            )
        if kind == "recv_bitmap":
            return w.command(C.RECV_BITMAP, {"idstr": "pc.bios"})
        return w.command(
            {
                "open_return_path": C.OPEN_RETURN_PATH,
                "switchover": C.SWITCHOVER_START,
                "listen": C.POSTCOPY_LISTEN,
                "run": C.POSTCOPY_RUN,
            }[kind]
        )

    def element(self, el) -> bytes:
        if el[0] == "ram":
            return self.ram_part(el[1])
        if el[0] == "device":
            return self.device(*el[1:])
        if el[0] == "command":
            return self.command(el[1])
        inner = b"".join(self.element(e) for e in el[1])
        if el[2]:  # a nested EOF, then bytes the loader ignores
            inner += w.eof() + el[3]
        return w.command(C.PACKAGED, {"length": len(inner)}) + inner


def build_full_stream(elements, seed: int, page_size: int, vmdesc: bool) -> bytes:
    b = _Builder(seed, page_size)
    bits = page_size.bit_length() - 1
    # Machine "none": no architecture, so any page bits in range are its own.
    out = w.file_header() + w.configuration("none", target_page_bits=bits, uuid=bytes(range(16)) if seed & 1 else None)
    out += w.section_start(2, "ram") + w.mem_size(b.blocks, page_size=page_size)
    out += w.ram_record(F.EOS, page_size=page_size) + w.footer(2)
    out += b"".join(b.element(e) for e in elements)
    out += b.ram_part([], end=True)
    out += b.device("timer", 0, bytes(range(40))) + w.eof()
    if vmdesc:
        out += w.vmdescription(b'{"page_size": %d, "devices": []}' % page_size)
    return out


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    elements=st.lists(element, max_size=8),
    seed=st.integers(0, 2**32),
    page_size=st.sampled_from([4096, 8192, 1024]),
    vmdesc=st.booleans(),
)
def test_generated_streams_three_way(elements, seed, page_size, vmdesc):
    data = build_full_stream(elements, seed, page_size, vmdesc)
    three_way(data, page_size)


def test_kaitai_rejects_what_the_loader_rejects():
    """The checks the spec makes raise in the Kaitai parser (spot checks; the
    decoder's own are in test_errors.py)."""
    from kaitaistruct import KaitaiStructError

    good = build_full_stream([("ram", [("page", 0, 1)])], 0, 4096, True)
    kaitai_records(good)
    ram_part_at = good.index(bytes([g.SectionType.PART]) + (2).to_bytes(4, "big"))
    bad_flags = good[: ram_part_at + 5] + (0x400 | F.PAGE).to_bytes(8, "big") + good[ram_part_at + 13 :]
    bad_version = good.replace(b"\x03ram\x00\x00\x00\x00\x00\x00\x00\x04", b"\x03ram\x00\x00\x00\x00\x00\x00\x00\x03")
    bad_footer = good.replace(w.footer(2), w.footer(3), 1)
    for data in (bad_flags, bad_version, bad_footer, b"QEVM\x00\x00\x00\x02\x00"):
        with pytest.raises(KaitaiStructError):
            kaitai_records(data)


# --- the committed parser is what the spec compiles to ------------------------------


def test_committed_parser_matches_the_spec(tmp_path):
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node/npm not installed: cannot run kaitai-struct-compiler (CI installs them)")
    if not (FORMATS / "node_modules" / "kaitai-struct-compiler").is_dir():
        subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=FORMATS, check=True, capture_output=True)
    subprocess.run([node, str(FORMATS / "build.mjs"), str(tmp_path)], check=True, capture_output=True)
    fresh = (tmp_path / "qemu_migration.py").read_text()
    assert fresh == (FORMATS / "qemu_migration.py").read_text(), (
        "formats/qemu_migration.py is stale: run `node formats/build.mjs` and commit it"
    )


@pytest.mark.parametrize("ignore_shared,hugepages", [(True, False), (False, True), (True, True)])
def test_block_list_parameters(ignore_shared, hugepages):
    """MEM_SIZE entries with block addresses (x-ignore-shared) and per-block page
    sizes (postcopy with huge pages): the Kaitai parameters and what the decoder
    derives from the configuration capabilities and POSTCOPY_ADVISE agree."""
    from migstream.decode.decoder import StreamDecoder
    from migstream.events import RamBlockList

    blocks = [("pc.ram", 1 << 21, 0x2000_0000, 1 << 21), ("pc.bios", 1 << 18, 0xFFFC_0000, 4096)]
    entries = b"".join(
        bytes([len(n)])
        + n.encode()
        + ln.to_bytes(8, "big")
        + (ps.to_bytes(8, "big") if hugepages else b"")
        + (gpa.to_bytes(8, "big") if ignore_shared else b"")
        for n, ln, gpa, ps in blocks
    )
    total = sum(b[1] for b in blocks)
    data = w.file_header() + w.configuration("pc-q35-7.2", capabilities=["x-ignore-shared"] if ignore_shared else None)
    if hugepages:
        data += w.command(C.POSTCOPY_ADVISE, {"ram_pagesize_summary": (1 << 21) | 4096, "target_page_size": 4096})
    data += w.section_start(2, "ram") + (total | F.MEM_SIZE).to_bytes(8, "big") + entries
    data += w.ram_record(F.EOS) + w.footer(2) + w.eof()

    m = K(4096, ignore_shared, hugepages, False, KaitaiStream(BytesIO(data)))
    rec = next(e for e in m.elements if e.is_section).section.ram.records[0]
    got = [
        (b.idstr.value, b.used_length, getattr(b, "gpa", None), getattr(b, "page_size", None)) for b in rec.body.blocks
    ]
    dec = StreamDecoder()
    dec.feed(data)
    dec.feed(b"")
    ev = next(e for e in dec if isinstance(e, RamBlockList))
    assert got == [(b.name, b.used_length, b.addr, b.page_size) for b in ev.blocks]
    assert got == [(n, ln, gpa if ignore_shared else None, ps if hugepages else None) for n, ln, gpa, ps in blocks]
