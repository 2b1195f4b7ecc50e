"""qcow2 internal snapshots: the VM state HMP ``savevm`` / QMP ``snapshot-save`` (and
libvirt's internal snapshots with memory) store inside a qcow2 image.

The state is an ordinary migration stream kept in the guest-invisible part of the
snapshot's virtual space, from ``size_to_l1(disk_size) << (cluster_bits + l2_bits)``
(block/qcow2.h ``qcow2_vm_state_offset``; ``qcow2_snapshot_goto`` resizes the image to
the snapshot's disk size before ``-loadvm`` reads it).  It is read here through the
snapshot's own L1 table: after ``savevm`` QEMU discards those clusters from the active
table (block/qcow2-snapshot.c ``qcow2_snapshot_create``).

Layout from QEMU's docs/interop/qcow2.txt (header, snapshot table, L1/L2 entries,
compressed cluster descriptors, extended L2 entries with 32 subclusters).  Reads go
through ``os.pread`` on the image, so any number of readers share one file; nothing
larger than one chunk, one L2 table and the snapshot's L1 table is held in memory.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections import OrderedDict
from datetime import UTC
from datetime import datetime

from ..errors import UsageError
from ..record import record

MAGIC = b"QFI\xfb"
#: QEMU's bounds (block/qcow2.h): cluster_bits 9..21, snapshot table and L1 sizes.
MIN_CLUSTER_BITS = 9
MAX_CLUSTER_BITS = 21
MAX_SNAPSHOTS = 65536
MAX_SNAPSHOTS_SIZE = 1024 * 65536
MAX_L1_SIZE = 32 << 20  # bytes
MAX_EXTRA_DATA = 1024
#: Header fields (docs/interop/qcow2.txt), big-endian.
_HEADER_V2 = struct.Struct(">4sIQIIQIIQQIIQ")  # up to snapshots_offset: 72 bytes
_HEADER_V3 = struct.Struct(">QQQII")  # incompatible, compatible, autoclear, refcount_order, header_length
_SNAPSHOT = struct.Struct(">QIHHIIQII")  # 40 bytes
#: Incompatible feature bits.
INCOMPAT_DIRTY = 1 << 0
INCOMPAT_CORRUPT = 1 << 1
INCOMPAT_DATA_FILE = 1 << 2
INCOMPAT_COMPRESSION = 1 << 3
INCOMPAT_EXTL2 = 1 << 4
_INCOMPAT_KNOWN = INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2
#: L1/L2 entry bits.
OFFSET_MASK = 0x00FFFFFFFFFFFE00
COMPRESSED = 1 << 62
ZERO = 1 << 0
SUBCLUSTERS = 32
COMPRESSION_TYPES = {0: "zlib", 1: "zstd"}


class Qcow2Error(UsageError):
    """A qcow2 image (or one of its snapshots) that cannot be read: one line, with the
    byte offset in the image file."""

    def __init__(self, path: str, message: str, offset: int | None = None) -> None:
        where = f", offset 0x{offset:x}" if offset is not None else ""
        super().__init__(f"{path}: qcow2{where}: {message}")
        self.offset = offset


def is_qcow2(head: bytes) -> bool:
    return head[:4] == MAGIC


@record
class Snapshot:
    """One entry of the snapshot table (QCowSnapshotHeader + extra data)."""

    index: int  # position in the table
    entry_offset: int  # file offset of the entry
    id: str
    name: str
    l1_table_offset: int
    l1_size: int
    date_sec: int
    date_nsec: int
    vm_clock_nsec: int
    vm_state_size: int  # exact (the large field when present)
    disk_size: int
    icount: int | None

    @property
    def date(self) -> str:
        return datetime.fromtimestamp(self.date_sec, UTC).strftime("%Y-%m-%d %H:%M:%S")

    @property
    def vm_clock(self) -> str:
        """As ``qemu-img snapshot -l`` prints it: HHHH:MM:SS.mmm."""
        secs, ns = divmod(self.vm_clock_nsec, 10**9)
        return f"{secs // 3600:04d}:{secs // 60 % 60:02d}:{secs % 60:02d}.{ns // 10**6:03d}"

    def as_dict(self) -> dict:
        return {
            "id": self.id,
            "name": self.name,
            "date_sec": self.date_sec,
            "date_nsec": self.date_nsec,
            "date": self.date,
            "vm_clock_nsec": self.vm_clock_nsec,
            "icount": self.icount,
            "disk_size": self.disk_size,
            "vm_state_size": self.vm_state_size,
        }


class Qcow2Image:
    """The header and snapshot table of a qcow2 image opened at ``fd`` (not owned)."""

    def __init__(self, fd: int, path: str) -> None:
        self.fd, self.path = fd, path
        self.file_size = os.fstat(fd).st_size
        head = os.pread(fd, 112, 0)
        if len(head) < _HEADER_V2.size:
            self._fail(f"header truncated: {len(head)} of {_HEADER_V2.size} bytes", len(head))
        (
            magic,
            self.version,
            self.backing_file_offset,
            _backing_size,
            self.cluster_bits,
            self.size,
            self.crypt_method,
            _l1_size,
            _l1_offset,
            _rc_offset,
            _rc_clusters,
            nb_snapshots,
            snapshots_offset,
        ) = _HEADER_V2.unpack_from(head)
        if magic != MAGIC:
            self._fail(f"not a qcow2 image (magic {magic!r})", 0)
        if self.version not in (2, 3):
            self._fail(f"unsupported qcow2 version {self.version}", 4)
        if not MIN_CLUSTER_BITS <= self.cluster_bits <= MAX_CLUSTER_BITS:
            self._fail(f"unsupported cluster size: cluster_bits {self.cluster_bits}", 20)
        self.cluster_size = 1 << self.cluster_bits
        self.incompatible = 0
        self.compression_type = 0
        self.refcount_order = 4
        if self.version == 3:
            if len(head) < _HEADER_V2.size + _HEADER_V3.size:
                self._fail("version 3 header truncated", len(head))
            self.incompatible, _compat, _autoclear, self.refcount_order, header_length = _HEADER_V3.unpack_from(
                head, _HEADER_V2.size
            )
            if header_length < 104 or header_length > self.cluster_size:
                self._fail(f"invalid header length {header_length}", 100)
            if self.refcount_order > 6:
                self._fail(f"invalid refcount order {self.refcount_order} (at most 6)", 96)
            if self.incompatible & INCOMPAT_COMPRESSION:
                if header_length < 105 or len(head) < 105:
                    self._fail("compression type bit set but the header has no compression type field", 104)
                self.compression_type = head[104]
                if self.compression_type not in COMPRESSION_TYPES:
                    self._fail(f"unknown compression type {self.compression_type}", 104)
        if self.crypt_method:
            self._fail("encrypted image: the VM state is encrypted too and cannot be read", 32)
        if self.incompatible & INCOMPAT_CORRUPT:
            self._fail("image is marked corrupt (run qemu-img check -r all on a copy)", 72)
        if self.incompatible & INCOMPAT_DATA_FILE:
            self._fail("image has an external data file (no internal snapshots possible)", 72)
        unknown = self.incompatible & ~_INCOMPAT_KNOWN
        if unknown:
            self._fail(f"unknown incompatible feature bits 0x{unknown:x}", 72)
        self.extended_l2 = bool(self.incompatible & INCOMPAT_EXTL2)
        if self.extended_l2 and self.cluster_bits < 14:
            self._fail(f"extended L2 entries need clusters of 16 KiB or more (cluster_bits {self.cluster_bits})", 20)
        self.l2_entry_size = 16 if self.extended_l2 else 8
        self.l2_bits = self.cluster_bits - (4 if self.extended_l2 else 3)
        self.snapshots = self._read_snapshots(nb_snapshots, snapshots_offset)

    def _fail(self, message: str, offset: int | None = None):
        raise Qcow2Error(self.path, message, offset)

    def _read_snapshots(self, count: int, offset: int) -> list[Snapshot]:
        if count == 0:
            return []
        if count > MAX_SNAPSHOTS:
            self._fail(f"too many snapshots ({count}, at most {MAX_SNAPSHOTS})", 60)
        if offset % self.cluster_size or offset >= self.file_size:
            self._fail(f"snapshot table at 0x{offset:x} is unaligned or outside the file", 64)
        table = os.pread(self.fd, min(MAX_SNAPSHOTS_SIZE, self.file_size - offset), offset)
        out, pos, ids = [], 0, set()
        for i in range(count):
            at = offset + pos
            if pos + _SNAPSHOT.size > len(table):
                self._fail(f"snapshot {i} runs past the end of the file or the table limit", at)
            l1_off, l1_size, id_len, name_len, dsec, dnsec, clock, vm32, extra = _SNAPSHOT.unpack_from(table, pos)
            if extra > MAX_EXTRA_DATA:
                self._fail(f"snapshot {i}: extra data size {extra} too large (at most {MAX_EXTRA_DATA})", at + 36)
            pos += _SNAPSHOT.size
            fields = table[pos : pos + extra]
            pos += extra
            ident = table[pos : pos + id_len]
            name = table[pos + id_len : pos + id_len + name_len]
            pos += id_len + name_len
            if pos > len(table):
                self._fail(f"snapshot {i} runs past the end of the file or the table limit", at)
            pos = (pos + 7) & ~7
            vm_size = vm32
            if len(fields) >= 8:
                vm_size = struct.unpack_from(">Q", fields, 0)[0]
            disk_size = struct.unpack_from(">Q", fields, 8)[0] if len(fields) >= 16 else self.size
            icount = struct.unpack_from(">q", fields, 16)[0] if len(fields) >= 24 else -1
            if l1_size > MAX_L1_SIZE // 8:
                self._fail(f"snapshot {i}: L1 table too large ({l1_size} entries)", at + 8)
            if l1_size and (l1_off % self.cluster_size or l1_off + l1_size * 8 > self.file_size):
                self._fail(f"snapshot {i}: L1 table at 0x{l1_off:x} ({l1_size} entries) is outside the file", at)
            snap = Snapshot(
                index=i,
                entry_offset=at,
                id=ident.decode("utf-8", "replace"),
                name=name.decode("utf-8", "replace"),
                l1_table_offset=l1_off,
                l1_size=l1_size,
                date_sec=dsec,
                date_nsec=dnsec,
                vm_clock_nsec=clock,
                vm_state_size=vm_size,
                disk_size=disk_size,
                icount=None if icount < 0 else icount,
            )
            if snap.id in ids:
                self._fail(f"snapshot {i}: duplicate id {snap.id!r}", at)
            ids.add(snap.id)
            out.append(snap)
        return out

    def vm_state_offset(self, snap: Snapshot) -> int:
        """Where the VM state starts in the snapshot's virtual space (block/qcow2.h)."""
        shift = self.cluster_bits + self.l2_bits
        return ((snap.disk_size + (1 << shift) - 1) >> shift) << shift

    def describe(self, snap: Snapshot) -> dict:
        """What ``info`` shows of the image and the snapshot it reads."""
        return {
            "version": self.version,
            "cluster_size": self.cluster_size,
            "extended_l2": self.extended_l2,
            "compression_type": COMPRESSION_TYPES[self.compression_type],
            "snapshot": snap.as_dict(),
            "vm_state_offset": self.vm_state_offset(snap),
        }

    def select(self, selector: str | None) -> Snapshot:
        """The snapshot named or numbered ``selector`` (name first, then id, as
        ``qemu-img``/``loadvm`` look it up); without one, the only snapshot with VM state."""
        with_state = [s for s in self.snapshots if s.vm_state_size]
        if selector is None:
            if len(with_state) == 1:
                return with_state[0]
            if not with_state:
                self._fail("no snapshot holds VM state" + self._listing())
            raise UsageError(
                f"{self.path}: {len(with_state)} snapshots hold VM state, choose one with --snapshot or "
                f"IMAGE@SNAPSHOT:{self._listing(with_state)}"
            )
        found = [s for s in self.snapshots if s.name == selector] or [s for s in self.snapshots if s.id == selector]
        if not found:
            raise UsageError(f"{self.path}: no snapshot {selector!r}:{self._listing()}")
        snap = found[0]
        if not snap.vm_state_size:
            raise UsageError(f"{self.path}: snapshot {snap.name!r} (id {snap.id}) has no VM state (disk only)")
        # savevm grows the L1 table to cover all of the state it writes, and the
        # snapshot keeps a copy of that table: a larger size is damage.
        mapped = snap.l1_size << (self.cluster_bits + self.l2_bits)
        if self.vm_state_offset(snap) + snap.vm_state_size > mapped:
            self._fail(
                f"snapshot {snap.id}: VM state of {snap.vm_state_size} bytes at virtual offset "
                f"0x{self.vm_state_offset(snap):x} runs past what its L1 table maps (0x{mapped:x})",
                snap.entry_offset + 32,
            )
        return snap

    def _listing(self, snaps: list[Snapshot] | None = None) -> str:
        snaps = self.snapshots if snaps is None else snaps
        if not snaps:
            return " (the image has no snapshots)"
        return " " + ", ".join(f"{s.id} {s.name!r} ({s.vm_state_size} bytes of VM state)" for s in snaps)


class VmStateReader:
    """A seekable, read-only file view of one snapshot's VM state (``size`` bytes),
    read cluster by cluster through the snapshot's L1 table."""

    #: L2 tables kept (each one cluster).
    L2_CACHE = 8

    def __init__(self, image: Qcow2Image, snap: Snapshot) -> None:
        self.image, self.snap = image, snap
        self.size = snap.vm_state_size
        self.base = image.vm_state_offset(snap)
        self._pos = 0
        raw = os.pread(image.fd, snap.l1_size * 8, snap.l1_table_offset) if snap.l1_size else b""
        if len(raw) < snap.l1_size * 8:
            image._fail(f"snapshot {snap.id}: L1 table truncated", snap.l1_table_offset + len(raw))
        self._l1 = struct.unpack(f">{snap.l1_size}Q", raw)
        self._l2: OrderedDict[int, bytes] = OrderedDict()

    # -- file interface ----------------------------------------------------------
    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self._pos
        elif whence == 2:
            pos += self.size
        if pos < 0:
            raise ValueError("negative seek position")
        self._pos = pos
        return pos

    def tell(self) -> int:
        return self._pos

    def read(self, n: int = -1) -> bytearray:
        left = max(0, self.size - self._pos)
        n = left if n is None or n < 0 else min(n, left)
        data = self.pread(n, self._pos)
        self._pos += len(data)
        return data

    def close(self) -> None:
        self._l2.clear()
        if self.owns_fd and self.image.fd >= 0:
            os.close(self.image.fd)
            self.image.fd = -1

    #: Set by ``reopen``: close() closes the image's file too.
    owns_fd = False

    def reopen(self) -> VmStateReader:
        """The same snapshot's state through a descriptor of its own (for a reader
        that outlives the source, e.g. the TUI's read-back)."""
        fd = os.open(self.image.path, os.O_RDONLY)
        try:
            image = Qcow2Image(fd, self.image.path)
            snap = next(s for s in image.snapshots if s.id == self.snap.id)
        except BaseException:
            os.close(fd)
            raise
        reader = VmStateReader(image, snap)
        reader.owns_fd = True
        return reader

    # -- reading -----------------------------------------------------------------
    def pread(self, n: int, pos: int) -> bytearray:
        """``n`` bytes of VM state from ``pos`` (clipped to the state's size)."""
        n = max(0, min(n, self.size - pos))
        out = bytearray(n)
        view = memoryview(out)
        cs = self.image.cluster_size
        done = 0
        pending: tuple[int, int, int] | None = None  # (host offset, out offset, length) to read in one go
        while done < n:
            vpos = self.base + pos + done
            within = vpos & (cs - 1)
            length = min(cs - within, n - done)
            for host, at, ln in self._pieces(vpos - within, within, length):
                dst = done + at
                if host is None:
                    continue  # zeros: bytearray is zero already
                if isinstance(host, bytes):  # a decompressed cluster
                    view[dst : dst + ln] = host
                    continue
                if pending is not None and pending[0] + pending[2] == host and pending[1] + pending[2] == dst:
                    pending = (pending[0], pending[1], pending[2] + ln)
                    continue
                if pending is not None:
                    self._read_into(view, *pending)
                pending = (host, dst, ln)
            done += length
        if pending is not None:
            self._read_into(view, *pending)
        return out  # a fresh buffer, never reused: handed on without a copy

    def _read_into(self, view: memoryview, host: int, at: int, length: int) -> None:
        got = os.preadv(self.image.fd, [view[at : at + length]], host)
        if got < length:
            self.image._fail(
                f"snapshot {self.snap.id}: VM state data at 0x{host:x} (+{length}) runs past the end of the file",
                host,
            )

    def _pieces(self, vcluster: int, within: int, length: int):
        """(host offset | bytes | None, offset in the piece list, length) covering
        [within, within+length) of the virtual cluster at ``vcluster``."""
        img = self.image
        cs = img.cluster_size
        l2_index = (vcluster >> img.cluster_bits) & ((1 << img.l2_bits) - 1)
        l1_index = vcluster >> (img.cluster_bits + img.l2_bits)
        if l1_index >= len(self._l1):
            yield None, 0, length  # past the L1 table: reads as zero
            return
        l1_entry = self._l1[l1_index]
        l2_offset = l1_entry & OFFSET_MASK
        if not l2_offset:
            yield None, 0, length
            return
        l2 = self._l2_table(l2_offset, self.snap.l1_table_offset + 8 * l1_index)
        entry_at = l2_index * img.l2_entry_size
        entry = int.from_bytes(l2[entry_at : entry_at + 8], "big")
        where = l2_offset + entry_at
        if entry & COMPRESSED:
            data = self._compressed(entry, where)
            yield data[within : within + length], 0, length
            return
        host = entry & OFFSET_MASK
        if not img.extended_l2:
            if (entry & ZERO and img.version >= 3) or not host:
                yield None, 0, length
                return
            self._check_cluster(host, where)
            yield host + within, 0, length
            return
        bitmap = int.from_bytes(l2[entry_at + 8 : entry_at + 16], "big")
        alloc, zero = bitmap & 0xFFFFFFFF, bitmap >> 32
        if alloc & zero:
            img._fail(f"L2 entry 0x{entry:x}: subclusters both allocated and zero (bitmap 0x{bitmap:x})", where)
        if alloc and not host:
            img._fail("L2 entry has allocated subclusters but no host cluster", where)
        if alloc:
            self._check_cluster(host, where)
        sub = cs // SUBCLUSTERS
        pos = within
        end = within + length
        while pos < end:
            i = pos // sub
            ln = min((i + 1) * sub, end) - pos
            yield (host + pos if alloc >> i & 1 else None), pos - within, ln
            pos += ln

    def _check_cluster(self, host: int, where: int) -> None:
        img = self.image
        if host & (img.cluster_size - 1):
            img._fail(f"L2 entry points to unaligned cluster 0x{host:x}", where)
        if host >= img.file_size:
            img._fail(f"L2 entry points to 0x{host:x}, outside the file (0x{img.file_size:x} bytes)", where)

    def _l2_table(self, offset: int, where: int) -> bytes:
        table = self._l2.get(offset)
        if table is not None:
            self._l2.move_to_end(offset)
            return table
        img = self.image
        if offset & (img.cluster_size - 1):
            img._fail(f"L1 entry points to unaligned L2 table 0x{offset:x}", where)
        if offset + img.cluster_size > img.file_size:
            img._fail(f"L1 entry points to L2 table 0x{offset:x}, outside the file (0x{img.file_size:x} bytes)", where)
        table = os.pread(img.fd, img.cluster_size, offset)
        self._l2[offset] = table
        if len(self._l2) > self.L2_CACHE:
            self._l2.popitem(last=False)
        return table

    def _compressed(self, entry: int, where: int) -> bytes:
        img = self.image
        cb = img.cluster_bits
        shift = 62 - (cb - 8)
        host = entry & ((1 << shift) - 1)
        sectors = ((entry >> shift) & ((1 << (cb - 8)) - 1)) + 1
        size = sectors * 512 - (host & 511)
        if host >= img.file_size:
            img._fail(f"compressed cluster at 0x{host:x} is outside the file (0x{img.file_size:x} bytes)", where)
        raw = os.pread(img.fd, size, host)  # may be short at the end of the file: the data ends earlier
        try:
            if img.compression_type == 0:
                d = zlib.decompressobj(-12)
                data = d.decompress(raw, img.cluster_size)
            else:
                data = self._zstd_decompress(raw)
        except Exception as exc:  # zlib.error, zstandard.ZstdError
            img._fail(f"compressed cluster at 0x{host:x} does not decompress: {exc}", where)
        if len(data) != img.cluster_size:
            img._fail(
                f"compressed cluster at 0x{host:x} decompresses to {len(data)} bytes, not {img.cluster_size}", where
            )
        return data

    def _zstd_decompress(self, raw: bytes) -> bytes:
        """One zstd frame (QEMU's qcow2-threads.c writes one per cluster; the bytes
        after it up to the sector's end are not part of it), never inflated past a
        cluster: a frame that declares its size must declare exactly one cluster
        (libzstd refuses output beyond a declared size); one that does not is fed in
        small pieces."""
        import zstandard  # only zstd-compressed images need it

        cs = self.image.cluster_size
        declared = zstandard.get_frame_parameters(raw).content_size
        if declared not in (cs, zstandard.CONTENTSIZE_UNKNOWN):
            raise ValueError(f"frame declares {declared} bytes")
        dobj = zstandard.ZstdDecompressor().decompressobj()
        if declared == cs:
            return dobj.decompress(raw)
        parts, got = [], 0
        for at in range(0, len(raw), 256):
            part = dobj.decompress(raw[at : at + 256])
            parts.append(part)
            got += len(part)
            if got > cs or dobj.eof:
                break
        return b"".join(parts)

    def chunks(self, size: int = 8 << 20):
        """The state in fresh chunks of ``size`` bytes (never reused)."""
        pos = 0
        while pos < self.size:
            data = self.pread(size, pos)
            pos += len(data)
            yield data


def split_snapshot(path: str) -> tuple[str, str | None]:
    """``IMAGE@SNAPSHOT`` -> (IMAGE, SNAPSHOT) when ``path`` itself does not exist and
    IMAGE (the shortest prefix before an ``@``) is a qcow2 file; else (path, None)."""
    if "@" not in path or path == "-" or os.path.exists(path):
        return path, None
    at = path.find("@")
    while at != -1:
        image = path[:at]
        if os.path.isfile(image):
            try:
                with open(image, "rb") as f:
                    if is_qcow2(f.read(4)):
                        return image, path[at + 1 :]
            except OSError:
                pass
        at = path.find("@", at + 1)
    return path, None


def snapshot_path(path: str, snapshot: str | None) -> str:
    """``path`` with a ``--snapshot`` selector attached (the form ``StreamSource`` opens)."""
    if snapshot is None:
        return path
    if split_snapshot(path)[1] is not None:
        raise UsageError(f"{path}: a snapshot is chosen both with @ and with --snapshot")
    if os.path.isfile(path):
        with open(path, "rb") as f:
            if not is_qcow2(f.read(4)):
                raise UsageError(f"{path}: --snapshot applies to qcow2 images only")
    return f"{path}@{snapshot}"
