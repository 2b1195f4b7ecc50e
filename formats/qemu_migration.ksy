meta:
  id: qemu_migration
  title: QEMU live-migration stream (main channel, savevm format version 3)
  application: QEMU (migrate to exec:/file:/tcp:/unix:, savevm, the payload of a virsh save image)
  file-extension: mig
  license: MIT
  ks-version: '0.11'
  endian: be
  bit-endian: be
doc: |
  The byte stream QEMU writes on the main migration channel and reads back with
  qemu_loadvm_state() (migration/savevm.c): a file header, an optional
  configuration section, then sections, commands and RAM records up to
  QEMU_VM_EOF, then an optional JSON description.  All integers are big-endian
  (qemu_put_be16/32/64, migration/qemu-file.c).

  Written from QEMU's sources (migration/savevm.c, savevm.h, ram.c, ram.h,
  vmstate.c, qemu-file.c) and checked against real QEMU 7.2 captures: the
  generated parser (formats/qemu_migration.py) must produce the same records as
  migstream's construct grammar (migstream/grammar.py) and its fast decoder on
  every sample (tests/unit/test_kaitai.py).

  Parameters: the stream does not say everything in-band.
  * `page_size` is TARGET_PAGE_SIZE: RAM record headers keep their flags in the
    bits below it (migration/ram.c ram_load_precopy: `flags = addr &
    ~TARGET_PAGE_MASK`).  It is 4096 on x86, ppc64, s390x, riscv and on aarch64
    `virt` with modern CPUs; the configuration subsection target-page-bits gives
    it when present, otherwise the machine type implies it.
  * `ignore_shared` is the x-ignore-shared capability (MEM_SIZE entries carry a
    block address); `postcopy_hugepages` is "postcopy was advised and the RAM page
    size summary differs from the target page size" (MEM_SIZE entries carry a
    per-block page size).  Both are listed in the configuration section and the
    POSTCOPY_ADVISE command, which Kaitai cannot search, so the caller says.

  What the spec frames and checks (and what it leaves to the decoder):
  * It frames every element: header, configuration and its subsections,
    START/PART/END/FULL sections with their footers, commands with their payloads
    (PACKAGED with its nested stream), RAM records of every kind, block migration
    and dirty-bitmap records, EOF, the VMDESCRIPTION.
  * Which section is RAM: the START header with idstr "ram", instance 0; PART and
    END refer to it by section id.  The id is carried from element to element
    (`ram_section_id` params, `ram_section_id_after` instances), like QEMU's
    loader looks sections up in its list (savevm.c find_se / the section list).
    The block migration section ("block", migration/block.c) and the dirty-bitmap
    section ("dirty-bitmap", block-dirty-bitmap.c) are tracked the same way
    (`block_section_id`, `bitmap_section_id`).
  * The CONTINUE context: a page record with RAM_SAVE_FLAG_CONTINUE targets the
    block of the previous page record, across section boundaries
    (ram.c ram_block_from_stream).  Each record gets the previous block as a
    parameter and exposes `block`; a CONTINUE record with no block before it is
    rejected ("Ack, bad migration stream!").
  * Device (non-RAM) sections are opaque: their layout is in QEMU's C code and,
    for FULL sections, in the VMDESCRIPTION JSON that comes *after* EOF.  The
    spec frames them like migstream's decoder does without a description: by
    searching for the section footer (0x7e + be32 section id followed by a byte
    that can start the next element).  Streams without section footers (machine
    types of QEMU 2.3 and older, hw/core/machine.c hw_compat_2_3, and Xen) therefore
    cannot be framed past their first device section; migstream's decoder frames
    those with the JSON description.
  * Checked here: magic, version 3, element tags, RAM section version 4, footer
    section ids, RAM flag combinations, XBZRLE encoding byte and length, the
    COMPRESS_PAGE length bound, MEM_SIZE lengths adding up to the total, command
    numbers and fixed command lengths, PACKAGED contents within the package.
    Not checked (the decoder does): block names against the MEM_SIZE list,
    page offsets against block lengths, XBZRLE delta contents, zlib contents,
    footer presence being consistent across sections, migstream's size limits.
doc-ref:
  - https://gitlab.com/qemu-project/qemu/-/blob/master/migration/savevm.c
  - https://gitlab.com/qemu-project/qemu/-/blob/master/migration/ram.c
  - https://gitlab.com/qemu-project/qemu/-/blob/master/migration/vmstate.c

params:
  - id: page_size
    type: u4
    doc: TARGET_PAGE_SIZE in bytes (a power of two, 1024..65536).
  - id: ignore_shared
    type: bool
    doc: Capability x-ignore-shared is on (MEM_SIZE entries carry the block address; ram.c ram_save_setup).
  - id: postcopy_hugepages
    type: bool
    doc: |
      POSTCOPY_ADVISE announced a RAM page size summary different from the target
      page size (MEM_SIZE entries carry each block's page size; ram.c ram_load_precopy).
  - id: mapped_ram
    type: bool
    doc: |
      Capability mapped-ram (QEMU 9.0+, `file:` URIs): every MEM_SIZE entry is followed
      by a MappedRamHeader and the block's page region at a fixed file offset
      (ram.c mapped_ram_setup_ramblock; docs/devel/migration/mapped-ram.rst).

seq:
  - id: magic
    contents: QEVM
    doc: QEMU_VM_FILE_MAGIC 0x5145564d (migration/savevm.h; written by qemu_savevm_state_header).
  - id: version
    type: u4
    valid: 3
    doc: |
      QEMU_VM_FILE_VERSION (savevm.h).  Version 2 is refused by the loader ("SaveVM
      v2 format is obsolete and don't work anymore", savevm.c qemu_loadvm_state).
  - id: elements
    type: 'element(_index == 0 ? -1 : elements[_index - 1].ram_section_id_after, _index == 0 ? -1 : elements[_index - 1].block_section_id_after, _index == 0 ? -1 : elements[_index - 1].bitmap_section_id_after, _index == 0 ? "" : elements[_index - 1].block_after, _io.pos)'
    repeat: until
    repeat-until: _.tag == section_type::eof
    doc: Everything up to and including QEMU_VM_EOF (savevm.c qemu_loadvm_state_main).
  - id: vmdescription
    type: vmdescription
    if: has_vmdescription
    doc: |
      QEMU writes QEMU_VM_VMDESCRIPTION after EOF unless the machine suppresses it
      or the migration is postcopy (savevm.c should_send_vmdesc).  The loader only
      warns when something else follows ("Expected vmdescription section, but got
      %d"): so does the spec, by reading nothing more.

instances:
  after_eof:
    pos: _io.pos
    type: u1
    if: not _io.eof
    doc: A peek at the byte after EOF.
  has_vmdescription:
    doc: 'Whether a VMDESCRIPTION follows EOF.'
    value: not _io.eof and after_eof == section_type::vmdescription.to_i

types:
  element:
    doc: One top-level element, introduced by its QEMU_VM_* tag (savevm.c qemu_loadvm_state_main).
    params:
      - id: ram_section_id
        type: s8
        doc: Section id of the RAM START seen so far, -1 before it.
      - id: block_section_id
        type: s8
        doc: Section id of the block migration START seen so far, -1 before it.
      - id: bitmap_section_id
        type: s8
        doc: Section id of the dirty-bitmap START seen so far, -1 before it.
      - id: last_block
        type: str
        doc: The CONTINUE context (block of the last page record so far), "" before any.
      - id: ofs
        type: u8
        doc: Stream offset of the tag byte (Kaitai objects do not know their position).
    seq:
      - id: tag
        type: u1
        enum: section_type
        valid:
          any-of:
            - section_type::eof
            - section_type::section_start
            - section_type::section_part
            - section_type::section_end
            - section_type::section_full
            - section_type::configuration
            - section_type::command
        doc: QEMU_VM_* (savevm.h).  Anything else is "Unknown savevm section type %d".
      - id: section
        doc: 'START, PART, END or FULL.'
        type: section(tag, ram_section_id, block_section_id, bitmap_section_id, last_block)
        if: is_section
      - id: configuration
        doc: 'QEMU_VM_CONFIGURATION (first element when the machine sends it).'
        type: configuration
        if: tag == section_type::configuration
      - id: command
        doc: 'QEMU_VM_COMMAND.'
        type: command(ram_section_id, block_section_id, bitmap_section_id, last_block)
        if: tag == section_type::command
    instances:
      is_section:
        doc: 'The tag introduces a section (START, PART, END, FULL).'
        value: >-
          tag == section_type::section_start or tag == section_type::section_part
          or tag == section_type::section_end or tag == section_type::section_full
      ram_section_id_after:
        value: >-
          is_section ? section.ram_section_id_after
          : (tag == section_type::command ? command.ram_section_id_after : ram_section_id)
        doc: The RAM section id after this element (for the next one).
      block_section_id_after:
        value: >-
          is_section ? section.block_section_id_after
          : (tag == section_type::command ? command.block_section_id_after : block_section_id)
        doc: The block migration section id after this element (for the next one).
      bitmap_section_id_after:
        value: >-
          is_section ? section.bitmap_section_id_after
          : (tag == section_type::command ? command.bitmap_section_id_after : bitmap_section_id)
        doc: The dirty-bitmap section id after this element (for the next one).
      block_after:
        value: >-
          is_section ? section.block_after
          : (tag == section_type::command ? command.block_after : last_block)
        doc: The CONTINUE context after this element (for the next one).

  section:
    doc: |
      A START, PART, END or FULL section (savevm.c save_section_header,
      qemu_loadvm_section_start_full / qemu_loadvm_section_part_end), its payload
      and its footer.
    params:
      - id: tag
        type: u1
        enum: section_type
      - id: ram_section_id
        type: s8
      - id: block_section_id
        type: s8
      - id: bitmap_section_id
        type: s8
      - id: last_block
        type: str
    seq:
      - id: section_id
        type: u4
        doc: |
          se->section_id, given in registration order (savevm.c register_savevm_live /
          vmstate_register).  PART and END name the START they continue by this id.
      - id: idstr
        type: counted_string
        if: has_header
        doc: SaveStateEntry idstr, e.g. "ram", "timer", "0000:00:02.0/virtio-net" (savevm.c save_section_header).
      - id: instance_id
        type: u4
        if: has_header
        doc: se->instance_id; several devices of one kind differ by it.
      - id: version_id
        type: u4
        if: has_header
        valid:
          expr: not is_ram or _ == 4
        doc: |
          se->version_id.  The RAM section is version 4 (ram.c: register_savevm_live("ram",
          0, 4, ...)); ram_load returns -EINVAL for any other.
      - id: ram
        type: ram_records(last_block)
        if: is_ram
        doc: The RAM section's payload (ram.c ram_save_setup / ram_save_iterate / ram_save_complete).
      - id: dirty_bitmap
        type: dirty_bitmap_records
        if: is_dirty_bitmap
        doc: The dirty-bitmap section's payload (migration/block-dirty-bitmap.c dirty_bitmap_save_setup / _complete).
      - id: block
        type: block_records
        if: is_block
        doc: The block migration section's payload (migration/block.c block_save_setup / _iterate / _complete).
      - id: device_state
        size: device_state_framing.size
        if: not is_ram and not is_block and not is_dirty_bitmap
        doc: |
          An opaque device payload (vmstate fields and subsections, vmstate.c
          vmstate_save_state; or an iterative handler's own format such as spapr/htab
          or s390-storage_attributes), framed by its footer (see device_state_framing).
      - id: footer
        type: section_footer(section_id)
        if: footer_tag == section_type::footer.to_i
        doc: |
          QEMU_VM_SECTION_FOOTER after every section payload when the machine type sends
          footers (savevm.c save_section_footer / check_section_footer; migration
          property send-section-footer, off for machine types 2.3 and older via
          hw_compat_2_3 and under Xen).
    instances:
      has_header:
        value: tag == section_type::section_start or tag == section_type::section_full
        doc: START and FULL carry idstr, instance and version; PART and END only the id.
      is_ram:
        value: >-
          has_header ? (tag == section_type::section_start and idstr.value == "ram" and instance_id == 0)
          : section_id == ram_section_id
        doc: |
          The live RAM section: opened by a START named "ram", instance 0, continued
          by PART/END sections with its id.  A FULL section named "ram" is opaque.
      is_block:
        value: >-
          not is_ram and (has_header ? (tag == section_type::section_start and idstr.value == "block")
          : section_id == block_section_id)
        doc: |
          The block migration section (capability "block", QEMU 1.0 - 9.0): opened by a
          START named "block", continued by PART/END sections with its id.
      is_dirty_bitmap:
        value: >-
          not is_ram and (has_header ? (tag == section_type::section_start and idstr.value == "dirty-bitmap")
          : section_id == bitmap_section_id)
        doc: |
          The dirty-bitmap section (capability dirty-bitmaps): opened by a START named
          "dirty-bitmap", continued by PART/END sections with its id.
      device_state_framing:
        pos: _io.pos
        type: footer_search(section_id, _io.pos)
        doc: Evaluated where the payload starts; finds where the footer begins.
      footer_tag:
        pos: _io.pos
        type: u1
        doc: A peek at the byte after the payload (0x7e when a footer follows).
      ram_section_id_after:
        doc: 'This section''s id if it opens the RAM section, else the one passed in.'
        value: 'tag == section_type::section_start and is_ram ? section_id : ram_section_id'
      block_section_id_after:
        doc: 'This section''s id if it opens the block migration section, else the one passed in.'
        value: 'tag == section_type::section_start and is_block ? section_id : block_section_id'
      bitmap_section_id_after:
        doc: 'This section''s id if it opens the dirty-bitmap section, else the one passed in.'
        value: 'tag == section_type::section_start and is_dirty_bitmap ? section_id : bitmap_section_id'
      block_after:
        doc: 'The CONTINUE context after this section''s RAM records.'
        value: 'is_ram ? ram.block_after : last_block'

  section_footer:
    doc: QEMU_VM_SECTION_FOOTER + be32 section id (savevm.c save_section_footer).
    params:
      - id: expected_section_id
        type: u4
    seq:
      - id: tag
        doc: 'QEMU_VM_SECTION_FOOTER (savevm.h).'
        contents: [0x7e]
      - id: section_id
        type: u4
        valid: expected_section_id
        doc: Must repeat the section's id ("Mismatched section id in footer for %s", savevm.c check_section_footer).

  footer_search:
    doc: |
      Kaitai cannot search for a byte string, so this reads the payload in pieces
      that end at each 0x7e byte until one is followed by the section id and a byte
      that can start the next element (EOF, START, PART, END, FULL, COMMAND): the
      same rule as migstream's decoder uses when it has no JSON description
      (decoder.py _scan_footer).  Section ids are unique, which makes a false hit
      inside a payload rare; with the description QEMU wrote, the decoder can check
      the sizes instead.
    params:
      - id: section_id
        type: u4
      - id: start
        type: u8
        doc: Stream offset of the payload.
    seq:
      - id: pieces
        doc: 'Payload pieces, each ending at a 0x7e byte; the last one''s 0x7e starts the footer.'
        type: footer_search_piece(section_id)
        repeat: until
        repeat-until: _.footer_found
    instances:
      size:
        value: pieces.last.footer_pos - start
        doc: Payload bytes before the footer.

  footer_search_piece:
    doc: 'Payload bytes up to a 0x7e byte, and whether that byte starts the section footer.'
    params:
      - id: section_id
        type: u4
    seq:
      - id: data
        terminator: 0x7e
        doc: Payload bytes up to the next 0x7e (consumed, not included).
    instances:
      after:
        value: _io.pos
        doc: Position after the 0x7e; first read by footer_found, right after `data`.
      footer_pos:
        doc: 'Position of this piece''s 0x7e byte.'
        value: after - 1
      lookahead:
        doc: 'The bytes after the 0x7e, read without moving on.'
        pos: after
        type: footer_lookahead
      footer_found:
        doc: '0x7e + this section''s id + a byte that can start the next element (or the end): the footer.'
        value: >-
          lookahead.has_id and lookahead.section_id == section_id
          and (not lookahead.has_next or lookahead.next_tag == 0 or lookahead.next_tag == 1
          or lookahead.next_tag == 2 or lookahead.next_tag == 3 or lookahead.next_tag == 4
          or lookahead.next_tag == 8)

  footer_lookahead:
    doc: 'The 5 bytes after a 0x7e candidate (fewer at the end of the stream).'
    seq:
      - id: section_id
        doc: 'A footer''s be32 section id, if 4 bytes remain.'
        type: u4
        if: has_id
      - id: next_tag
        doc: 'The byte after it: the next element''s tag for a real footer.'
        type: u1
        if: has_next
    instances:
      has_id:
        doc: 'At least 4 bytes remain.'
        value: _io.size - _io.pos >= 4
      has_next:
        doc: 'At least 5 bytes remain.'
        value: _io.size - _io.pos >= 5

  configuration:
    doc: |
      QEMU_VM_CONFIGURATION: vmstate_configuration (savevm.c), sent first when the
      machine type has send-configuration on; the loader then requires it
      ("Configuration section missing").  No section id, no footer.
    seq:
      - id: len_machine
        doc: 'be32 length of the machine name (vmstate_configuration''s VMSTATE_VBUFFER_ALLOC_UINT32, savevm.c).'
        type: u4
      - id: machine
        type: str
        size: len_machine
        encoding: ISO-8859-1
        doc: |
          The machine type, e.g. "pc-i440fx-7.2" (no NUL).  The loader compares it with
          its own ("Machine type received is '%.*s' and local is '%s'").
      - id: subsections
        type: config_subsection
        repeat: until
        repeat-until: _.next_tag != section_type::subsection.to_i
        if: first_tag == section_type::subsection.to_i
        doc: Optional subsections, each sent only when needed (vmstate.c vmstate_subsection_save).
    instances:
      first_tag:
        pos: _io.pos
        type: u1
        doc: A peek at the byte after the machine name (0x05 when a subsection follows).

  config_subsection:
    doc: QEMU_VM_SUBSECTION, u8 name length, name, be32 version, fields (vmstate.c vmstate_subsection_save).
    seq:
      - id: tag
        doc: 'QEMU_VM_SUBSECTION (savevm.h).'
        contents: [0x05]
      - id: len_name
        doc: 'u8 length of the subsection name (vmstate.c vmstate_subsection_save).'
        type: u1
      - id: name
        type: str
        size: len_name
        encoding: ISO-8859-1
        valid:
          any-of:
            - '"configuration/target-page-bits"'
            - '"configuration/capabilities"'
            - '"configuration/uuid"'
        doc: The three subsections of vmstate_configuration (savevm.c).
      - id: version_id
        type: u4
        doc: 1 for all three.
      - id: body
        doc: 'The subsection''s fields.'
        type:
          switch-on: name
          cases:
            '"configuration/target-page-bits"': config_target_page_bits
            '"configuration/capabilities"': config_capabilities
            '"configuration/uuid"': config_uuid
    instances:
      next_tag:
        pos: _io.pos
        type: u1
        doc: A peek at the byte after this subsection.

  config_target_page_bits:
    doc: |
      Sent when TARGET_PAGE_BITS exceeds the target's minimum (savevm.c
      vmstate_target_page_bits); without it the loader assumes the minimum.
    seq:
      - id: target_page_bits
        type: u4
        doc: log2 of TARGET_PAGE_SIZE ("Received TARGET_PAGE_BITS is %d but local is %d").

  config_capabilities:
    doc: |
      The migration capabilities the loader must match (savevm.c vmstate_capabilites,
      should_validate_capability: x-ignore-shared and mapped-ram).
    seq:
      - id: num_caps
        doc: 'be32 number of capability names (savevm.c vmstate_capabilites, caps_count).'
        type: u4
      - id: caps
        doc: 'Capability names as u8-length strings (savevm.c vmstate_info_capability).'
        type: counted_string
        repeat: expr
        repeat-expr: num_caps

  config_uuid:
    doc: The VM's UUID, sent with capability validate-uuid (savevm.c vmstate_uuid).
    seq:
      - id: uuid
        doc: 'QemuUUID bytes (savevm.c vmstate_uuid, "UUID received is %s and local is %s").'
        size: 16

  command:
    doc: |
      QEMU_VM_COMMAND: be16 command, be16 length, payload (savevm.c
      qemu_savevm_command_send, loadvm_process_command).
    params:
      - id: ram_section_id
        type: s8
      - id: block_section_id
        type: s8
      - id: bitmap_section_id
        type: s8
      - id: last_block
        type: str
    seq:
      - id: cmd
        type: u2
        enum: command_type
        valid:
          expr: _.to_i >= 1 and _.to_i <= 11
        doc: enum qemu_vm_cmd (savevm.c); others are "MIG_CMD 0x%x unknown (len 0x%x)".
      - id: len
        type: u2
        valid:
          expr: 'expected_len < 0 ? (cmd != command_type::postcopy_advise or _ == 0 or _ == 16) : _ == expected_len'
        doc: |
          Payload length.  Fixed-length commands are checked like the loader does
          ("%s received with bad length - expecting %zu, got %d", savevm.c
          mig_cmd_args); POSTCOPY_ADVISE is 0 or 16.
      - id: payload
        doc: 'The command''s arguments; commands without a type here carry none or raw bytes.'
        size: len
        type:
          switch-on: cmd
          cases:
            command_type::ping: cmd_ping
            command_type::postcopy_advise: cmd_postcopy_advise
            command_type::postcopy_ram_discard: cmd_postcopy_ram_discard
            command_type::packaged: cmd_packaged
            command_type::recv_bitmap: cmd_recv_bitmap
      - id: package
        type: 'package(payload.as<cmd_packaged>.length, _io.pos, ram_section_id, block_section_id, bitmap_section_id, last_block)'
        if: cmd == command_type::packaged
        doc: |
          The PACKAGED data follows the command itself (savevm.c
          qemu_savevm_send_packaged, loadvm_handle_cmd_packaged).
    instances:
      expected_len:
        value: >-
          cmd == command_type::open_return_path or cmd == command_type::postcopy_listen
          or cmd == command_type::postcopy_run or cmd == command_type::enable_colo
          or cmd == command_type::postcopy_resume or cmd == command_type::switchover_start ? 0
          : (cmd == command_type::ping or cmd == command_type::packaged ? 4 : -1)
        doc: The fixed length of this command, -1 when it varies.
      ram_section_id_after:
        doc: 'The RAM section id after this command (PACKAGED data may open it).'
        value: 'cmd == command_type::packaged ? package.ram_section_id_after : ram_section_id'
      block_section_id_after:
        doc: 'The block migration section id after this command (PACKAGED data may open it).'
        value: 'cmd == command_type::packaged ? package.block_section_id_after : block_section_id'
      bitmap_section_id_after:
        doc: 'The dirty-bitmap section id after this command (PACKAGED data may open it).'
        value: 'cmd == command_type::packaged ? package.bitmap_section_id_after : bitmap_section_id'
      block_after:
        doc: 'The CONTINUE context after this command (PACKAGED data may carry RAM records).'
        value: 'cmd == command_type::packaged ? package.block_after : last_block'

  cmd_ping:
    doc: 'MIG_CMD_PING (savevm.c qemu_savevm_send_ping / loadvm_process_command).'
    seq:
      - id: value
        type: u4
        doc: Echoed back as PONG on the return path; 0x42 is QEMU_VM_PING_PACKAGED_LOADED (savevm.h).

  cmd_postcopy_advise:
    doc: savevm.c qemu_savevm_send_postcopy_advise / loadvm_postcopy_handle_advise.
    seq:
      - id: ram_pagesize_summary
        type: u8
        if: not _io.eof
        doc: OR of the page sizes of all RAM blocks (ram.c ram_pagesize_summary).
      - id: target_page_size
        type: u8
        if: not _io.eof
        doc: The source's TARGET_PAGE_SIZE ("Postcopy needs matching target page sizes").

  cmd_postcopy_ram_discard:
    doc: savevm.c qemu_savevm_send_postcopy_ram_discard / loadvm_postcopy_ram_handle_discard.
    seq:
      - id: version
        type: u1
        valid: 0
        doc: postcopy_ram_discard_version, 0.
      - id: block
        type: counted_string
        doc: RAM block name.
      - id: terminator
        type: u1
        valid: 0
        doc: A NUL after the name.
      - id: ranges
        type: discard_range
        repeat: eos
        doc: Ranges of the block the destination must discard (be64 start, be64 length).

  discard_range:
    doc: 'One range of a POSTCOPY_RAM_DISCARD (savevm.c qemu_savevm_send_postcopy_ram_discard).'
    seq:
      - id: start
        doc: 'be64 first byte of the range inside the block.'
        type: u8
      - id: length
        doc: 'be64 length of the range in bytes.'
        type: u8

  cmd_packaged:
    doc: 'MIG_CMD_PACKAGED (savevm.c qemu_savevm_send_packaged).'
    seq:
      - id: length
        type: u4
        doc: Bytes of nested stream following the command (savevm.c loadvm_handle_cmd_packaged).

  cmd_recv_bitmap:
    doc: Postcopy recovery (savevm.c qemu_savevm_send_recv_bitmap / loadvm_handle_recv_bitmap).
    seq:
      - id: block
        doc: 'RAM block whose dirty bitmap the destination sends back (len must equal name length + 1).'
        type: counted_string

  package:
    doc: |
      The data of a PACKAGED command: a nested stream of sections and commands
      without file header (postcopy sends the device state this way, with no EOF
      inside).  The loader parses it as its own stream and stops at EOF or at its
      end; an element that runs past the end is an error here (the pieces after a
      nested EOF are skipped, as the loader does).
    params:
      - id: length
        type: u4
      - id: start
        type: u8
      - id: ram_section_id
        type: s8
      - id: block_section_id
        type: s8
      - id: bitmap_section_id
        type: s8
      - id: last_block
        type: str
    seq:
      - id: elements
        doc: 'The nested elements, up to a nested EOF or the end of the package.'
        type: 'element(_index == 0 ? ram_section_id : elements[_index - 1].ram_section_id_after, _index == 0 ? block_section_id : elements[_index - 1].block_section_id_after, _index == 0 ? bitmap_section_id : elements[_index - 1].bitmap_section_id_after, _index == 0 ? last_block : elements[_index - 1].block_after, _io.pos)'
        repeat: until
        repeat-until: _.tag == section_type::eof or _io.pos >= start + length
        if: length > 0
      - id: rest
        size: start + length - _io.pos
        doc: Bytes after a nested EOF; a negative size (an element ran past the end) is an error.
    instances:
      ram_section_id_after:
        doc: 'The RAM section id after the package.'
        value: 'length > 0 ? elements.last.ram_section_id_after.as<s8> : ram_section_id'
      block_section_id_after:
        doc: 'The block migration section id after the package.'
        value: 'length > 0 ? elements.last.block_section_id_after.as<s8> : block_section_id'
      bitmap_section_id_after:
        doc: 'The dirty-bitmap section id after the package.'
        value: 'length > 0 ? elements.last.bitmap_section_id_after.as<s8> : bitmap_section_id'
      block_after:
        doc: 'The CONTINUE context after the package.'
        value: 'length > 0 ? elements.last.block_after.as<str> : last_block'

  dirty_bitmap_records:
    doc: |
      The payload of the dirty-bitmap section: records up to and including one with
      EOS (block-dirty-bitmap.c dirty_bitmap_load).
    seq:
      - id: records
        type: dirty_bitmap_record(_io.pos)
        repeat: until
        repeat-until: _.flags & 0x01 != 0

  dirty_bitmap_record:
    doc: |
      One dirty-bitmap record (block-dirty-bitmap.c send_bitmap_header, send_bitmap_start,
      send_bitmap_complete, send_bitmap_bits; read by dirty_bitmap_load_header and
      dirty_bitmap_load_start / _complete / _bits).
    params:
      - id: ofs
        type: u8
        doc: Stream offset of the record.
    seq:
      - id: first_flags
        type: u1
        doc: |
          DIRTY_BITMAP_MIG_FLAG_* (EOS 0x01, ZEROES 0x02, BITMAP_NAME 0x04, DEVICE_NAME
          0x08, START 0x10, COMPLETE 0x20, BITS 0x40); 0x80 (EXTRA_FLAGS) means another
          byte follows (qemu_get_bitmap_flags).
      - id: second_flags
        type: u1
        if: first_flags & 0x80 != 0
        doc: A second flags byte; with 0x80 set again, a be16 follows.
      - id: last_flags
        type: u2
        if: first_flags & 0x80 != 0 and second_flags & 0x80 != 0
        doc: |
          Two more flags bytes.  The loader keeps the flags in a uint8_t, so the flags
          in force are the last byte read (`flags`).
      - id: node
        type: counted_string
        if: flags & 0x08 != 0
        doc: The node (alias) name; absent when the same as the previous record's.
      - id: bitmap
        type: counted_string
        if: flags & 0x04 != 0
        doc: The bitmap (alias) name; absent when the same as the previous record's.
      - id: granularity
        type: u4
        if: flags & 0x10 != 0
        doc: START (dirty_bitmap_load_start) - the bitmap's granularity in bytes.
      - id: bitmap_flags
        type: u1
        if: flags & 0x10 != 0
        valid:
          expr: _ & 0xf8 == 0
        doc: START - enabled 0x01, persistent 0x02; others are "Unknown flags in migrated dirty bitmap header".
      - id: start_sector
        type: u8
        if: is_bits
        doc: BITS (dirty_bitmap_load_bits) - the first sector of the range.
      - id: nr_sectors
        type: u4
        if: is_bits
        doc: BITS - sectors in the range.
      - id: buffer_size
        type: u8
        if: is_bits and flags & 0x02 == 0
        valid:
          max: 10240
        doc: BITS without ZEROES - bytes of serialized bits; the loader refuses more than 10 * CHUNK_SIZE.
      - id: data
        size: buffer_size
        if: is_bits and flags & 0x02 == 0
        doc: The serialized bits (bdrv_dirty_bitmap_serialize_part).
    instances:
      flags:
        value: >-
          first_flags & 0x80 == 0 ? first_flags
          : (second_flags & 0x80 == 0 ? second_flags : last_flags & 0xff)
        doc: The flags in force (the last byte read).
      is_bits:
        value: flags & 0x10 == 0 and flags & 0x20 == 0 and flags & 0x40 != 0
        doc: A BITS record (START and COMPLETE take precedence in the loader).

  block_records:
    doc: |
      The payload of the block migration section: records up to and including one
      with EOS (migration/block.c block_load loops until BLK_MIG_FLAG_EOS).
    seq:
      - id: records
        type: block_record(_io.pos)
        repeat: until
        repeat-until: _.flags & 0x02 != 0
        doc: Chunks of disks, progress reports, and EOS last.

  block_record:
    doc: |
      One block migration record (migration/block.c blk_send, blk_mig_save_bulked_block,
      block_save_complete; read by block_load): be64 (value << 9 | flags).
    params:
      - id: ofs
        type: u8
        doc: Stream offset of the record.
    seq:
      - id: value_flags
        type: u8
        valid:
          expr: >-
            (_ & 0x1ff) & 0x01 != 0 or (_ & 0x1ff) & 0x02 != 0 or (_ & 0x1ff) & 0x04 != 0
        doc: |
          BLK_MIG_FLAG_* in the low 9 bits (DEVICE_BLOCK 0x01, EOS 0x02, PROGRESS 0x04,
          ZERO_BLOCK 0x08); above them the chunk's first sector (BDRV_SECTOR_BITS = 9),
          or the percentage for PROGRESS.  A record with none of DEVICE_BLOCK, PROGRESS
          and EOS is "Unknown block migration flags".
      - id: device
        type: counted_string
        if: flags & 0x01 != 0
        doc: The block device's name (bdrv_get_device_name), e.g. "ide0-hd0" or a -drive id.
      - id: data
        size: 1048576
        if: flags & 0x01 != 0 and flags & 0x08 == 0
        doc: |
          The chunk: BLK_MIG_BLOCK_SIZE (1 MiB) bytes, always whole, even where the disk
          ends inside it (the loader writes only the disk's sectors).
    instances:
      flags:
        value: value_flags & 0x1ff
        doc: BLK_MIG_FLAG_* bits.
      value:
        value: value_flags >> 9
        doc: The chunk's first sector (DEVICE_BLOCK), the percentage (PROGRESS).

  ram_records:
    doc: |
      The payload of the RAM section: records up to and including EOS (ram.c
      ram_load_precopy / ram_load_postcopy loop until RAM_SAVE_FLAG_EOS).
    params:
      - id: block_before
        type: str
        doc: The CONTINUE context on entry (it survives section boundaries).
    seq:
      - id: records
        doc: 'RAM records; each is told the block of the record before it.'
        type: 'ram_record(_index == 0 ? block_before : records[_index - 1].block, _io.pos)'
        repeat: until
        repeat-until: _.kind == ram_flag::eos
    instances:
      block_after:
        doc: 'The CONTINUE context after the last record (EOS passes it on).'
        value: records.last.block

  ram_record:
    doc: |
      be64 (page offset | flags), then for page records without CONTINUE the block
      name, then a payload that depends on the flags (ram.c save_page_header,
      ram_load_precopy).
    params:
      - id: prev_block
        type: str
        doc: Block of the previous page record ("" when there was none).
      - id: ofs
        type: u8
        doc: Stream offset of the record.
    seq:
      - id: addr_flags
        type: u8
        valid:
          expr: >-
            (kind_value == 0x02 or kind_value == 0x04 or kind_value == 0x08
            or kind_value == 0x10 or kind_value == 0x40 or kind_value == 0x80
            or kind_value == 0x100 or kind_value == 0x200)
            and (not is_page or not is_continue or prev_block != "")
        doc: |
          The page's offset inside its block in the bits above the target page size,
          RAM_SAVE_FLAG_* in the bits below (ram.c save_page_header).  A flag
          combination the loader does not know is "Unknown combination of migration
          flags"; CONTINUE before any block is "Ack, bad migration stream!".
      - id: idstr
        type: counted_string
        if: has_idstr
        doc: The block name, sent when the block changes (ram.c save_page_header, ram_block_from_stream).
      - id: body
        type:
          switch-on: kind
          cases:
            ram_flag::zero: zero_page
            ram_flag::mem_size: block_list(addr)
            ram_flag::page: raw_page
            ram_flag::xbzrle: xbzrle_page
            ram_flag::compress_page: compressed_page
        doc: EOS, HOOK and MULTIFD_FLUSH have no payload.
    instances:
      flags:
        value: addr_flags & (_root.page_size - 1)
        doc: RAM_SAVE_FLAG_* bits (ram.h).
      addr:
        value: addr_flags - flags
        doc: Offset of the page inside its block; for MEM_SIZE the total RAM size.
      is_continue:
        value: (flags & 0x20) != 0
        doc: RAM_SAVE_FLAG_CONTINUE, "same block as the previous page record".
      kind_value:
        value: flags - (flags & 0x20)
        doc: 'The flags without CONTINUE: what the loader switches on.'
      kind:
        doc: 'The record kind as a RAM_SAVE_FLAG_* name.'
        value: kind_value
        enum: ram_flag
      is_page:
        value: kind_value == 0x02 or kind_value == 0x08 or kind_value == 0x40 or kind_value == 0x100
        doc: ZERO, PAGE, XBZRLE, COMPRESS_PAGE target one page of one block.
      has_idstr:
        doc: 'A page record without CONTINUE: the block name follows the header.'
        value: is_page and not is_continue
      block:
        value: 'has_idstr ? idstr.value : prev_block'
        doc: The block this record targets (page records), or the context it passes on.

  block_list:
    doc: |
      RAM_SAVE_FLAG_MEM_SIZE (ram.c ram_save_setup): every migratable RAM block;
      the loader subtracts each used_length from the total until nothing is left.
    params:
      - id: total
        type: u8
    seq:
      - id: blocks
        doc: '(idstr, used_length[, page size][, address]) per block, until the lengths cover the total.'
        type: 'ram_block_entry(_index == 0 ? total : blocks[_index - 1].remaining_after)'
        repeat: until
        repeat-until: _.used_length >= _.remaining
        if: total > 0
    instances:
      lengths_add_up:
        value: 'total == 0 or blocks.last.used_length == blocks.last.remaining'
        doc: |
          The last block exactly uses up the total.  QEMU's loader would instead
          read past the list (it compares with the block sizes it has).

  ram_block_entry:
    doc: 'One RAM block in the MEM_SIZE list (ram.c ram_save_setup).'
    params:
      - id: remaining
        type: u8
        doc: The part of the announced total not covered by earlier blocks.
    seq:
      - id: idstr
        type: counted_string
        doc: RAMBlock idstr, e.g. "pc.ram", "/rom@etc/acpi/tables".
      - id: used_length
        type: u8
        doc: The block's used length ("Size mismatch" / "Length mismatch" on load).
      - id: page_size
        type: u8
        if: _root.postcopy_hugepages
        doc: The block's page size, when postcopy was advised with huge pages (ram.c ram_load_precopy).
      - id: gpa
        type: u8
        if: _root.ignore_shared
        doc: The block's guest-physical address, with x-ignore-shared (ram.c ram_save_setup, "Mismatched GPAs").
      - id: mapped_ram_header
        type: mapped_ram_header
        if: _root.mapped_ram
        doc: Where this block's bitmap and pages lie in the file (ram.c mapped_ram_setup_ramblock).
      - id: mapped_ram_region
        size: mapped_ram_header.pages_offset + used_length - _io.pos
        if: _root.mapped_ram and mapped_ram_header.pages_offset != 0
        doc: |
          The bitmap, alignment padding and page region: the writer seeks to
          pages_offset + used_length before the next entry.  A shared block under
          x-ignore-shared has pages_offset 0 and no region.
    instances:
      remaining_after:
        doc: 'The part of the total left for the blocks after this one.'
        value: remaining - used_length

  mapped_ram_header:
    doc: MappedRamHeader (packed, big-endian), ram.c mapped_ram_setup_ramblock.
    seq:
      - id: version
        type: u4
        doc: MAPPED_RAM_HDR_VERSION, 1 ("Migration mapped-ram capability version not supported").
      - id: page_size
        type: u8
        doc: TARGET_PAGE_SIZE of the source.
      - id: bitmap_offset
        type: u8
        doc: File offset of the bitmap of written pages (host unsigned longs, written at completion).
      - id: pages_offset
        type: u8
        doc: File offset of page 0, aligned to 1 MiB (MAPPED_RAM_FILE_OFFSET_ALIGNMENT); 0 for a shared block.

  zero_page:
    doc: RAM_SAVE_FLAG_ZERO (once RAM_SAVE_FLAG_COMPRESS), ram.c save_zero_page.
    seq:
      - id: fill
        type: u1
        doc: The byte the page is filled with; QEMU sends 0 ("Found a zero page with value %d").

  raw_page:
    doc: RAM_SAVE_FLAG_PAGE, ram.c save_normal_page.
    seq:
      - id: data
        doc: 'The page, TARGET_PAGE_SIZE bytes (ram.c save_normal_page).'
        size: _root.page_size

  xbzrle_page:
    doc: RAM_SAVE_FLAG_XBZRLE, ram.c save_xbzrle_page / load_xbzrle (format in migration/xbzrle.c).
    seq:
      - id: encoding
        type: u1
        valid: 1
        doc: ENCODING_FLAG_XBZRLE ("Failed to load XBZRLE page - wrong compression!").
      - id: len_data
        type: u2
        valid:
          max: _root.page_size
        doc: Encoded length, at most one page ("Failed to load XBZRLE page - len overflow!").
      - id: data
        size: len_data
        doc: Zero-run / literal-run pairs (xbzrle.c xbzrle_decode_buffer).

  compressed_page:
    doc: RAM_SAVE_FLAG_COMPRESS_PAGE, QEMU 2.4 - 9.0 (ram.c / ram-compress.c do_compress_ram_page).
    seq:
      - id: len_data
        type: u4
        valid:
          max: _root.page_size + (_root.page_size >> 12) + (_root.page_size >> 14) + (_root.page_size >> 25) + 13
        doc: At most compressBound(TARGET_PAGE_SIZE) ("Invalid compressed data length").
      - id: data
        size: len_data
        doc: One complete zlib stream inflating to one page.

  counted_string:
    doc: u8 length + bytes, no NUL (qemu-file.c qemu_get_counted_string).
    seq:
      - id: len
        doc: 'u8 length.'
        type: u1
      - id: value
        doc: 'The bytes (QEMU uses ASCII names; read as ISO-8859-1 so any byte decodes).'
        type: str
        size: len
        encoding: ISO-8859-1

  vmdescription:
    doc: |
      QEMU_VM_VMDESCRIPTION after EOF: be32 length + JSON text describing every
      FULL section's fields (savevm.c qemu_savevm_state_complete_precopy_non_iterable,
      vmstate.c vmsd_desc_field_start/end).
    seq:
      - id: tag
        doc: 'QEMU_VM_VMDESCRIPTION (savevm.h).'
        contents: [0x06]
      - id: len_json
        doc: 'be32 length of the JSON (savevm.c: qemu_put_be32(f, json_len)).'
        type: u4
      - id: json
        size: len_json
        doc: UTF-8 JSON, not NUL-terminated.

enums:
  section_type:
    0x00: eof
    0x01: section_start
    0x02: section_part
    0x03: section_end
    0x04: section_full
    0x05: subsection
    0x06: vmdescription
    0x07: configuration
    0x08: command
    0x7e: footer
  command_type:
    0: invalid
    1: open_return_path
    2: ping
    3: postcopy_advise
    4: postcopy_listen
    5: postcopy_run
    6: postcopy_ram_discard
    7: packaged
    8: enable_colo
    9: postcopy_resume
    10: recv_bitmap
    11: switchover_start
  ram_flag:
    0x01: full
    0x02: zero
    0x04: mem_size
    0x08: page
    0x10: eos
    0x20: continue_flag
    0x40: xbzrle
    0x80: hook
    0x100: compress_page
    0x200: multifd_flush
