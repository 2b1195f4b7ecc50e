"""Disks rebuilt from block migration records: one sparse file per block device.

Block migration (capability "block", migration/block.c) sends each disk in 1 MiB
chunks: the chunk's bytes, or with capability zero-blocks only a ZERO_BLOCK flag.
The stream never says how long a disk is, and the last chunk of a disk is sent whole
(1 MiB) even when the disk ends inside it, so a file's length is the end of the last
chunk sent and a disk whose size is not a multiple of 1 MiB gets a tail of what
QEMU's buffer held beyond its end.
"""

from __future__ import annotations

import os

from ..errors import UsageError
from ..events import BlockRecord
from ..wire.grammar import BLOCK_CHUNK
from .ramimage import new_file
from .ramimage import safe_file_name


class DiskFile:
    def __init__(self, device: str, file: str, fd: int) -> None:
        self.device = device
        self.file = file
        self.fd = fd
        self.extent = 0
        self.chunks = 0
        self.zero_chunks = 0
        self.with_data: set[int] = set()  # chunks whose bytes on disk are not all zero


class DiskImages:
    """Applies BlockRecord events to ``directory/disk-<device>.bin``."""

    def __init__(self, directory: str, taken: set[str]) -> None:
        self.directory = directory
        self.taken = taken  # file names in use in the directory (shared with the RAM image)
        self.disks: dict[str, DiskFile] = {}
        self._zero = bytes(BLOCK_CHUNK)
        os.makedirs(directory, exist_ok=True)

    def _disk(self, device: str) -> DiskFile:
        disk = self.disks.get(device)
        if disk is None:
            fname = safe_file_name("disk-" + device, self.taken)
            path = os.path.join(self.directory, fname)
            try:
                fd = new_file(path)
            except OSError as exc:
                raise UsageError(f"cannot create {path}: {exc.strerror}") from exc
            disk = self.disks[device] = DiskFile(device, fname, fd)
        return disk

    def apply(self, rec: BlockRecord) -> None:
        if not rec.is_chunk:
            return
        assert rec.device is not None  # a DEVICE_BLOCK record names its device
        disk = self._disk(rec.device)
        at = rec.disk_offset
        chunk = at // BLOCK_CHUNK
        disk.chunks += 1
        if rec.is_zero:
            # blk_pwrite_zeroes: a hole already reads as zero; earlier data is cleared.
            disk.zero_chunks += 1
            if chunk in disk.with_data:
                os.pwrite(disk.fd, self._zero, at)
                disk.with_data.discard(chunk)
        else:
            os.pwrite(disk.fd, rec.data, at)
            disk.with_data.add(chunk)
        disk.extent = max(disk.extent, at + BLOCK_CHUNK)

    def close(self) -> list[dict]:
        """Close the files; the manifest's ``disks`` entries."""
        out = []
        for disk in self.disks.values():
            os.ftruncate(disk.fd, disk.extent)
            os.close(disk.fd)
            out.append(
                {
                    "device": disk.device,
                    "file": disk.file,
                    "length": disk.extent,
                    "chunks": disk.chunks,
                    "zero_chunks": disk.zero_chunks,
                }
            )
        self.disks.clear()
        return out
