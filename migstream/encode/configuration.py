"""What both encoders (the ram.c engine and the mapped-ram writer) put before RAM:
the RAM section's id and the configuration section's fields."""

from __future__ import annotations

from ..wire import build as writer

#: Section id of the RAM section when no template gives one.  It must not be 0:
#: QEMU's loader finds the handler of a PART/END by ``se->load_section_id``, which
#: is 0 for every handler not yet loaded (savevm.c qemu_loadvm_section_part_end),
#: so id 0 resolves to the first registered handler ("timer" on x86).  QEMU 7.2
#: itself gives "ram" id 2 on x86 pc/q35.
DEFAULT_RAM_SECTION_ID = 2


def target_page_bits(machine: str, page_size: int) -> int | None:
    """The configuration section's target-page-bits: sent only by targets whose page
    size varies (arm, aarch64: migration/options.c / savevm.c configuration_pre_save);
    None for the others."""
    from ..wire.pagesize import page_size_for

    arch = page_size_for(machine)[1]
    if arch in ("aarch64", "arm"):
        return page_size.bit_length() - 1
    return None


def without_mapped_ram(config: bytes) -> bytes:
    """A template's configuration for a stream that is not mapped-ram: a mapped-ram
    capture announces the capability, which the destination would then demand."""
    try:
        cfg = writer.parse_configuration(config)
    except ValueError:
        return config
    if "mapped-ram" not in cfg["capabilities"]:
        return config
    cfg["capabilities"] = [c for c in cfg["capabilities"] if c != "mapped-ram"]
    return writer.configuration(**cfg)
