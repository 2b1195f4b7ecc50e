"""libvirt save images: reading the header and the domain XML that precede the
QEMU stream (layout in ``grammar_libvirt.py``; rules from libvirt's
src/qemu/qemu_saveimage.c, qemuSaveImageReadHeader).

Pure functions over bytes: ``sources.py`` does the I/O and the decompression.
"""

from __future__ import annotations

from ..errors import UsageError
from ..record import record
from ..wire import libvirt_header as gl

#: A larger XML area is refused (libvirt writes the XML + 64 KiB of padding).
MAX_DATA_LEN = 64 << 20

#: Decompressors this toolkit can run for each stored format.
SUPPORTED_FORMATS = frozenset(
    {
        gl.SaveFormat.RAW,
        gl.SaveFormat.GZIP,
        gl.SaveFormat.BZIP2,
        gl.SaveFormat.XZ,
        gl.SaveFormat.LZOP,
        gl.SaveFormat.ZSTD,
        gl.SaveFormat.SPARSE,
    }
)


class SaveImageError(UsageError):
    """A libvirt save image whose header cannot be used (offset in the file)."""

    def __init__(self, message: str, offset: int) -> None:
        super().__init__(f"libvirt save image, offset 0x{offset:x}: {message}")
        self.offset = offset


@record
class SaveImage:
    """What a libvirt save image says about itself."""

    complete: bool  # magic LibvirtQemudSave (False: LibvirtQemudPart, save never finished)
    byte_order: str  # "little" or "big": the saving host's
    version: int
    data_len: int
    was_running: bool
    format: int  # SaveFormat value
    cookie_offset: int
    domain_xml: str
    cookie_xml: str | None

    @property
    def stream_offset(self) -> int:
        """File offset where the (possibly compressed) QEMU stream begins."""
        return gl.SAVE_HEADER_SIZE + self.data_len

    @property
    def format_name(self) -> str:
        try:
            return gl.SaveFormat(self.format).name.lower()
        except ValueError:
            return f"unknown ({self.format})"

    def domain(self) -> dict:
        """name, uuid, memory (bytes), vcpus, machine and arch from the domain XML."""
        return domain_summary(self.domain_xml)

    def as_dict(self) -> dict:
        return {
            "complete": self.complete,
            "byte_order": self.byte_order,
            "version": self.version,
            "data_len": self.data_len,
            "was_running": self.was_running,
            "format": self.format_name,
            "cookie_offset": self.cookie_offset,
            "stream_offset": self.stream_offset,
            # sparse: QEMU wrote a mapped-ram stream at the offset libvirt gave it (file:...,offset=);
            # its page and bitmap offsets, and so the offsets migstream reports, are file offsets.
            "offsets": "file" if self.format == gl.SaveFormat.SPARSE else "stream",
            "domain": self.domain(),
        }


def is_save_image(head: bytes) -> bool:
    return head.startswith(gl.MAGIC_PREFIX)


def parse_header(head: bytes) -> tuple[dict, str]:
    """The 92-byte header as a dict (host order detected the way libvirt does it)."""
    if len(head) < gl.SAVE_HEADER_SIZE:
        raise SaveImageError(f"header truncated: {len(head)} of {gl.SAVE_HEADER_SIZE} bytes", len(head))
    magic = head[:16]
    if magic not in (gl.MAGIC_COMPLETE, gl.MAGIC_PARTIAL):
        raise SaveImageError(f"image magic is incorrect: {magic!r}", 0)
    hdr = gl.SaveHeaderLE.parse(head[: gl.SAVE_HEADER_SIZE])
    order = "little"
    if hdr.version > gl.SAVE_VERSION:
        # qemuSaveImageBswapHeader: written on a host of the other byte order.
        hdr = gl.SaveHeaderBE.parse(head[: gl.SAVE_HEADER_SIZE])
        order = "big"
    if hdr.version > gl.SAVE_VERSION:
        raise SaveImageError(f"image version is not supported ({hdr.version} > {gl.SAVE_VERSION})", 16)
    if hdr.version != gl.SAVE_VERSION:
        # Version 1 images stored the stream raw regardless of the format field.
        raise SaveImageError(f"image version {hdr.version} is not supported (only {gl.SAVE_VERSION})", 16)
    if hdr.data_len == 0 or hdr.data_len > MAX_DATA_LEN:
        raise SaveImageError(f"invalid header data length: {hdr.data_len}", 20)
    if hdr.cookie_offset > hdr.data_len:
        raise SaveImageError(f"cookie offset {hdr.cookie_offset} beyond the data length {hdr.data_len}", 32)
    return dict(hdr), order


def read_save_image(read) -> SaveImage:
    """Read header and XML with ``read(n) -> bytes``; leaves the reader at the stream."""
    head = read(gl.SAVE_HEADER_SIZE)
    hdr, order = parse_header(head)
    data = read(hdr["data_len"])
    if len(data) < hdr["data_len"]:
        raise SaveImageError(
            f"domain XML truncated: {len(data)} of {hdr['data_len']} bytes", gl.SAVE_HEADER_SIZE + len(data)
        )
    fmt = hdr["format"]
    if fmt not in SUPPORTED_FORMATS:
        name = gl.SaveFormat(fmt).name.lower() if fmt in gl.SaveFormat._value2member_map_ else str(fmt)
        raise SaveImageError(f"unsupported save image format: {name}", 28)
    cookie_off = hdr["cookie_offset"]
    xml_bytes = data[:cookie_off] if cookie_off else data
    cookie = data[cookie_off:] if cookie_off else None
    return SaveImage(
        complete=hdr["magic"] == gl.MAGIC_COMPLETE,
        byte_order=order,
        version=hdr["version"],
        data_len=hdr["data_len"],
        was_running=bool(hdr["was_running"]),
        format=fmt,
        cookie_offset=cookie_off,
        domain_xml=_c_string(xml_bytes),
        cookie_xml=_c_string(cookie) if cookie is not None else None,
    )


def _c_string(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("utf-8", "replace")


_MEMORY_UNITS = {
    "b": 1,
    "bytes": 1,
    "k": 1 << 10,
    "kib": 1 << 10,
    "kb": 1000,
    "m": 1 << 20,
    "mib": 1 << 20,
    "mb": 10**6,
    "g": 1 << 30,
    "gib": 1 << 30,
    "gb": 10**9,
    "t": 1 << 40,
    "tib": 1 << 40,
    "tb": 10**12,
}


def domain_summary(xml_text: str) -> dict:
    """The few facts a user wants first; tolerant of odd XML (None where absent)."""
    out: dict[str, str | int | None] = {
        "name": None,
        "uuid": None,
        "memory": None,
        "vcpus": None,
        "machine": None,
        "arch": None,
        "type": None,
    }
    import xml.etree.ElementTree as ET  # here: only libvirt images need it (2 ms of every start-up)

    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return out
    out["type"] = root.get("type")
    out["name"] = root.findtext("name")
    out["uuid"] = root.findtext("uuid")
    mem = root.find("memory")
    if mem is not None and mem.text and mem.text.strip().isdigit():
        unit = (mem.get("unit") or "KiB").lower()  # libvirt's default unit is KiB
        out["memory"] = int(mem.text.strip()) * _MEMORY_UNITS.get(unit, 1024)
    vcpu = root.findtext("vcpu")
    if vcpu and vcpu.strip().isdigit():
        out["vcpus"] = int(vcpu.strip())
    ostype = root.find("os/type")
    if ostype is not None:
        out["machine"] = ostype.get("machine")
        out["arch"] = ostype.get("arch")
    return out
