"""A libvirt ``sparse`` save image (save_image_format = "sparse", format 6) made the
way libvirt 11 makes one, for QEMU 10+ (Debian 12's libvirt 9.0 has no sparse format):

1. libvirt's part: the 92-byte header (LibvirtQemudSave, version 2, format 6) and the
   data area (domain XML + NUL, cookie XML + NUL, 64 KiB of zeros), taken from a real
   `virsh save` image (samples/libvirt-xz.img) with the format field set to 6 and the
   machine in the XML set to the one that runs;
2. QEMU's part: migration with capability mapped-ram to ``file:PATH,offset=92+data_len``
   (libvirt passes an fd through an fdset with that offset, qemuMigrationSrcToSparseFile);
   QEMU opens a plain path with O_TRUNC, so it writes into the image file first and the
   libvirt bytes are written over the (untouched, zero) start afterwards: the same bytes
   as libvirt's fd-based save.
"""

from __future__ import annotations

import struct
from pathlib import Path

from .samples import SAMPLES

HEADER = 92


def libvirt_part(machine: str) -> bytes:
    """Header + data area of a real virsh save image, as format 6 for ``machine``."""
    real = (SAMPLES / "libvirt-xz.img").read_bytes()
    magic, version, data_len, was_running, _fmt, cookie = struct.unpack_from("<16s5I", real)
    data = real[HEADER : HEADER + data_len]
    xml, rest = data[:cookie].split(b"\0", 1)[0], data[cookie:]
    xml = xml.replace(b"machine='pc-i440fx-7.2'", f"machine='{machine}'".encode()) + b"\0"
    cookie_xml = rest.split(b"\0", 1)[0] + b"\0"
    data = xml + cookie_xml + bytes(65536)
    header = struct.pack("<16s5I", magic, version, len(data), 1, 6, len(xml)) + bytes(HEADER - 36)
    return header + data


def write_libvirt_part(path: Path, part: bytes) -> None:
    with open(path, "r+b") as f:
        assert f.read(len(part)) == bytes(len(part)), "QEMU wrote before its offset"
        f.seek(0)
        f.write(part)
