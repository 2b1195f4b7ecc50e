"""Memory images from a guest-physical image (ELF core, LiME, raw) and a template
stream: the other direction of ``dump``.

The template (a saved stream of the same VM) gives the machine, the RAM blocks and
their layout (``image/physmap.py``, the same rules ``dump`` uses) and the content
of every block the physical image does not cover (firmware, device ROMs).  Its RAM
is extracted into sparse block files in a scratch directory; every guest-physical
range of the image is then written over the block bytes it maps to (data extents
copied, the rest zeroed), and the result is opened as a ``MemoryImage``.
"""

from __future__ import annotations

import os

from ..containers.physimage import PhysicalImage
from ..encode.memimage import MemoryImage
from ..errors import UsageError
from ..image.physwriter import copy_range
from ..image.physwriter import data_extents
from ..image.pwrite import pwrite_all
from .dump import LayoutOptions
from .extract import extract

_ZEROS = bytes(1 << 20)


def memory_image_from_physical(
    path: str, template: str, scratch: str, layout: LayoutOptions | None = None
) -> MemoryImage:
    result = extract(template, scratch)
    if result.error is not None:
        raise UsageError(f"template {template}: {result.error}")
    man = result.manifest
    pmap = (layout or LayoutOptions()).map_for(man.get("machine"), man)
    files = {b["name"]: f"{scratch}/{b['file']}" for b in man["blocks"]}
    with PhysicalImage(path) as img:
        if not img.ranges:
            raise UsageError(f"{path}: no guest-physical ranges in the {img.kind} image")
        pieces = []  # (image range, gpa, size, map range)
        for r in img.ranges:
            gpa = r.gpa
            while gpa < r.end:
                m = pmap.locate(gpa)
                if m is None:
                    nxt = min((x.gpa for x in pmap.ranges if x.gpa > gpa), default=r.end)
                    hole_end = min(nxt, r.end)
                    raise UsageError(
                        f"{path}: GPA 0x{gpa:x}-0x{hole_end - 1:x} is not RAM of template {template} "
                        f"({man.get('machine')}: {'; '.join(pmap.describe()) or 'no RAM mapped'}); "
                        "place the block there with --map BLOCK=GPA"
                    )
                k = min(r.end, m.end) - gpa
                pieces.append((r, gpa, k, m))
                gpa += k
        fds = {name: os.open(p, os.O_RDWR) for name, p in files.items() if any(pc[3].block == name for pc in pieces)}
        try:
            for r, gpa, k, m in pieces:
                dst = fds[m.block]
                at = m.offset + gpa - m.gpa
                # Clear what the template had there, then copy the image's data.
                for lo, hi in list(data_extents(dst, at, at + k)):
                    while lo < hi:
                        n = min(hi - lo, len(_ZEROS))
                        pwrite_all(dst, memoryview(_ZEROS)[:n], lo)
                        lo += n
                src_lo = r.file_offset + gpa - r.gpa
                src_hi = src_lo + max(0, min(k, r.filesz - (gpa - r.gpa)))
                for lo, hi in data_extents(img.fd, src_lo, src_hi):
                    copy_range(img.fd, lo, dst, at + lo - src_lo, hi - lo)
        finally:
            for fd in fds.values():
                os.close(fd)
    return MemoryImage.from_directory(scratch)
