"""Bounds on hostile input, all in one place.

A stream is untrusted input: every length or count it carries is checked against
one of these before anything is allocated, searched or looped over.  Each bound is
far above what QEMU produces (the QEMU source that sets the real value is cited) so
that real streams never hit it.  docs/limits.md lists them (its table is generated
from this module by docs/limits_table.py); tests/unit/test_limits.py holds the
decoder to each one.
"""

from __future__ import annotations

#: PACKAGED commands inside PACKAGED data.  QEMU sends one level (postcopy wraps the
#: device state once, savevm.c qemu_savevm_send_packaged); the loader recurses
#: without a limit (loadvm_handle_cmd_packaged -> qemu_loadvm_state_main).
MAX_PACKAGE_DEPTH = 4

#: An idstr is u8 length + bytes (qemu_get_counted_string, migration/qemu-file.c):
#: the wire format itself bounds it; the constant names the bound.
MAX_IDSTR_LENGTH = 255

#: The configuration section's machine name (be32 length, savevm.c
#: vmstate_configuration).  Real names are like "pc-q35-9.1".
MAX_MACHINE_NAME = 4096

#: Bytes read to parse one configuration subsection or one MEM_SIZE block list.
#: A block list holds at most a few dozen (idstr, be64) entries.
MAX_CONFIG_SUBSECTION = 1 << 20
MAX_BLOCK_LIST = 1 << 20

#: Entries of one MEM_SIZE block list.  A VM has a few dozen RAM blocks (RAM,
#: firmware, option ROMs, ACPI tables); the loader reads entries until their lengths
#: cover the announced total (ram.c ram_load_precopy), which a hostile list avoids.
MAX_RAM_BLOCKS = 4096

#: The VMDESCRIPTION JSON (be32 length after EOF, savevm.c).  Real ones are tens
#: to hundreds of KiB.
MAX_DESCRIPTION = 64 << 20

#: Nesting of subsections in a device's JSON description (QEMU nests a few levels;
#: vmstate.c vmstate_subsection_save recurses per level).
MAX_SUBSECTION_DEPTH = 32

#: Largest device section framed by searching for its footer (no JSON description).
MAX_FOOTER_SCAN = 64 << 20

#: Largest pbs-state blob (Proxmox's section; a few KiB in practice).
MAX_PBS_STATE = 64 << 20

#: Target page size: TARGET_PAGE_BITS is 10..16 on QEMU's targets (target/*/cpu-param.h;
#: arm's minimum is 10).  Values outside [MIN, MAX] are refused, both as
#: configuration/target-page-bits and as a page size from any other source.
MIN_TARGET_PAGE_BITS = 9
MAX_TARGET_PAGE_BITS = 16
MIN_PAGE_SIZE = 1 << MIN_TARGET_PAGE_BITS
MAX_PAGE_SIZE = 1 << MAX_TARGET_PAGE_BITS

#: A RAM block's used_length (MEM_SIZE).  Blocks become sparse files (ramimage.py
#: ftruncate), so a large block reserves address space in a file, not memory or
#: disk; the bound keeps that within what file systems accept.
MAX_BLOCK_LENGTH = 1 << 50

#: Records in one PageRun event.  A bulk stage longer than this comes as several
#: runs; the bound keeps a run's offset table (8 bytes a record) at 8 MiB.
MAX_RUN_RECORDS = 1 << 20

#: Recorded bytes that `capture`/`tap` let wait for the disk, all channels together;
#: beyond it the recording stops (forwarding never does).
DEFAULT_MAX_BACKLOG = 1 << 30

#: Device-section headers kept while the VMDESCRIPTION is not known yet (a pipe: it
#: comes last) to check them when it arrives; beyond this many they stay unchecked.
MAX_PENDING_HEADERS = 1 << 16
