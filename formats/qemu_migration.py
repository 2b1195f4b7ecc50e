# This is a generated file! Please edit source .ksy file and use kaitai-struct-compiler to rebuild
# type: ignore

import kaitaistruct
from kaitaistruct import KaitaiStruct, KaitaiStream, BytesIO
from enum import IntEnum


if getattr(kaitaistruct, 'API_VERSION', (0, 9)) < (0, 11):
    raise Exception("Incompatible Kaitai Struct Python API: 0.11 or later is required, but you have %s" % (kaitaistruct.__version__))

class QemuMigration(KaitaiStruct):
    """The byte stream QEMU writes on the main migration channel and reads back with
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
    
    .. seealso::
       Source - https://gitlab.com/qemu-project/qemu/-/blob/master/migration/savevm.c
    
    
    .. seealso::
       Source - https://gitlab.com/qemu-project/qemu/-/blob/master/migration/ram.c
    
    
    .. seealso::
       Source - https://gitlab.com/qemu-project/qemu/-/blob/master/migration/vmstate.c
    """

    class CommandType(IntEnum):
        invalid = 0
        open_return_path = 1
        ping = 2
        postcopy_advise = 3
        postcopy_listen = 4
        postcopy_run = 5
        postcopy_ram_discard = 6
        packaged = 7
        enable_colo = 8
        postcopy_resume = 9
        recv_bitmap = 10
        switchover_start = 11

    class RamFlag(IntEnum):
        full = 1
        zero = 2
        mem_size = 4
        page = 8
        eos = 16
        continue_flag = 32
        xbzrle = 64
        hook = 128
        compress_page = 256
        multifd_flush = 512

    class SectionType(IntEnum):
        eof = 0
        section_start = 1
        section_part = 2
        section_end = 3
        section_full = 4
        subsection = 5
        vmdescription = 6
        configuration = 7
        command = 8
        footer = 126
    def __init__(self, page_size, ignore_shared, postcopy_hugepages, mapped_ram, _io, _parent=None, _root=None):
        super(QemuMigration, self).__init__(_io)
        self._parent = _parent
        self._root = _root or self
        self.page_size = page_size
        self.ignore_shared = ignore_shared
        self.postcopy_hugepages = postcopy_hugepages
        self.mapped_ram = mapped_ram
        self._read()

    def _read(self):
        self.magic = self._io.read_bytes(4)
        if not self.magic == b"\x51\x45\x56\x4D":
            raise kaitaistruct.ValidationNotEqualError(b"\x51\x45\x56\x4D", self.magic, self._io, u"/seq/0")
        self.version = self._io.read_u4be()
        if not self.version == 3:
            raise kaitaistruct.ValidationNotEqualError(3, self.version, self._io, u"/seq/1")
        self.elements = []
        i = 0
        while True:
            _ = QemuMigration.Element((-1 if i == 0 else self.elements[i - 1].ram_section_id_after), (-1 if i == 0 else self.elements[i - 1].block_section_id_after), (-1 if i == 0 else self.elements[i - 1].bitmap_section_id_after), (u"" if i == 0 else self.elements[i - 1].block_after), self._io.pos(), self._io, self, self._root)
            self.elements.append(_)
            if _.tag == QemuMigration.SectionType.eof:
                break
            i += 1
        if self.has_vmdescription:
            pass
            self.vmdescription = QemuMigration.Vmdescription(self._io, self, self._root)



    def _fetch_instances(self):
        pass
        for i in range(len(self.elements)):
            pass
            self.elements[i]._fetch_instances()

        if self.has_vmdescription:
            pass
            self.vmdescription._fetch_instances()

        _ = self.after_eof
        if hasattr(self, '_m_after_eof'):
            pass


    class BlockList(KaitaiStruct):
        """RAM_SAVE_FLAG_MEM_SIZE (ram.c ram_save_setup): every migratable RAM block;
        the loader subtracts each used_length from the total until nothing is left.
        """
        def __init__(self, total, _io, _parent=None, _root=None):
            super(QemuMigration.BlockList, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self.total = total
            self._read()

        def _read(self):
            if self.total > 0:
                pass
                self.blocks = []
                i = 0
                while True:
                    _ = QemuMigration.RamBlockEntry((self.total if i == 0 else self.blocks[i - 1].remaining_after), self._io, self, self._root)
                    self.blocks.append(_)
                    if _.used_length >= _.remaining:
                        break
                    i += 1



        def _fetch_instances(self):
            pass
            if self.total > 0:
                pass
                for i in range(len(self.blocks)):
                    pass
                    self.blocks[i]._fetch_instances()



        @property
        def lengths_add_up(self):
            """The last block exactly uses up the total.  QEMU's loader would instead
            read past the list (it compares with the block sizes it has).
            """
            if hasattr(self, '_m_lengths_add_up'):
                return self._m_lengths_add_up

            self._m_lengths_add_up =  ((self.total == 0) or (self.blocks[-1].used_length == self.blocks[-1].remaining)) 
            return getattr(self, '_m_lengths_add_up', None)


    class BlockRecord(KaitaiStruct):
        """One block migration record (migration/block.c blk_send, blk_mig_save_bulked_block,
        block_save_complete; read by block_load): be64 (value << 9 | flags).
        """
        def __init__(self, ofs, _io, _parent=None, _root=None):
            super(QemuMigration.BlockRecord, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self.ofs = ofs
            self._read()

        def _read(self):
            self.value_flags = self._io.read_u8be()
            _ = self.value_flags
            if not  (((_ & 511) & 1 != 0) or ((_ & 511) & 2 != 0) or ((_ & 511) & 4 != 0)) :
                raise kaitaistruct.ValidationExprError(self.value_flags, self._io, u"/types/block_record/seq/0")
            if self.flags & 1 != 0:
                pass
                self.device = QemuMigration.CountedString(self._io, self, self._root)

            if  ((self.flags & 1 != 0) and (self.flags & 8 == 0)) :
                pass
                self.data = self._io.read_bytes(1048576)



        def _fetch_instances(self):
            pass
            if self.flags & 1 != 0:
                pass
                self.device._fetch_instances()

            if  ((self.flags & 1 != 0) and (self.flags & 8 == 0)) :
                pass


        @property
        def flags(self):
            """BLK_MIG_FLAG_* bits."""
            if hasattr(self, '_m_flags'):
                return self._m_flags

            self._m_flags = self.value_flags & 511
            return getattr(self, '_m_flags', None)

        @property
        def value(self):
            """The chunk's first sector (DEVICE_BLOCK), the percentage (PROGRESS)."""
            if hasattr(self, '_m_value'):
                return self._m_value

            self._m_value = self.value_flags >> 9
            return getattr(self, '_m_value', None)


    class BlockRecords(KaitaiStruct):
        """The payload of the block migration section: records up to and including one
        with EOS (migration/block.c block_load loops until BLK_MIG_FLAG_EOS).
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.BlockRecords, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.records = []
            i = 0
            while True:
                _ = QemuMigration.BlockRecord(self._io.pos(), self._io, self, self._root)
                self.records.append(_)
                if _.flags & 2 != 0:
                    break
                i += 1


        def _fetch_instances(self):
            pass
            for i in range(len(self.records)):
                pass
                self.records[i]._fetch_instances()



    class CmdPackaged(KaitaiStruct):
        """MIG_CMD_PACKAGED (savevm.c qemu_savevm_send_packaged)."""
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.CmdPackaged, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.length = self._io.read_u4be()


        def _fetch_instances(self):
            pass


    class CmdPing(KaitaiStruct):
        """MIG_CMD_PING (savevm.c qemu_savevm_send_ping / loadvm_process_command)."""
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.CmdPing, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.value = self._io.read_u4be()


        def _fetch_instances(self):
            pass


    class CmdPostcopyAdvise(KaitaiStruct):
        """savevm.c qemu_savevm_send_postcopy_advise / loadvm_postcopy_handle_advise."""
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.CmdPostcopyAdvise, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            if (not (self._io.is_eof())):
                pass
                self.ram_pagesize_summary = self._io.read_u8be()

            if (not (self._io.is_eof())):
                pass
                self.target_page_size = self._io.read_u8be()



        def _fetch_instances(self):
            pass
            if (not (self._io.is_eof())):
                pass

            if (not (self._io.is_eof())):
                pass



    class CmdPostcopyRamDiscard(KaitaiStruct):
        """savevm.c qemu_savevm_send_postcopy_ram_discard / loadvm_postcopy_ram_handle_discard."""
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.CmdPostcopyRamDiscard, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.version = self._io.read_u1()
            if not self.version == 0:
                raise kaitaistruct.ValidationNotEqualError(0, self.version, self._io, u"/types/cmd_postcopy_ram_discard/seq/0")
            self.block = QemuMigration.CountedString(self._io, self, self._root)
            self.terminator = self._io.read_u1()
            if not self.terminator == 0:
                raise kaitaistruct.ValidationNotEqualError(0, self.terminator, self._io, u"/types/cmd_postcopy_ram_discard/seq/2")
            self.ranges = []
            i = 0
            while not self._io.is_eof():
                self.ranges.append(QemuMigration.DiscardRange(self._io, self, self._root))
                i += 1



        def _fetch_instances(self):
            pass
            self.block._fetch_instances()
            for i in range(len(self.ranges)):
                pass
                self.ranges[i]._fetch_instances()



    class CmdRecvBitmap(KaitaiStruct):
        """Postcopy recovery (savevm.c qemu_savevm_send_recv_bitmap / loadvm_handle_recv_bitmap)."""
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.CmdRecvBitmap, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.block = QemuMigration.CountedString(self._io, self, self._root)


        def _fetch_instances(self):
            pass
            self.block._fetch_instances()


    class Command(KaitaiStruct):
        """QEMU_VM_COMMAND: be16 command, be16 length, payload (savevm.c
        qemu_savevm_command_send, loadvm_process_command).
        """
        def __init__(self, ram_section_id, block_section_id, bitmap_section_id, last_block, _io, _parent=None, _root=None):
            super(QemuMigration.Command, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self.ram_section_id = ram_section_id
            self.block_section_id = block_section_id
            self.bitmap_section_id = bitmap_section_id
            self.last_block = last_block
            self._read()

        def _read(self):
            self.cmd = KaitaiStream.resolve_enum(QemuMigration.CommandType, self._io.read_u2be())
            _ = self.cmd
            if not  ((int(_) >= 1) and (int(_) <= 11)) :
                raise kaitaistruct.ValidationExprError(self.cmd, self._io, u"/types/command/seq/0")
            self.len = self._io.read_u2be()
            _ = self.len
            if not ( ((self.cmd != QemuMigration.CommandType.postcopy_advise) or (_ == 0) or (_ == 16))  if self.expected_len < 0 else _ == self.expected_len):
                raise kaitaistruct.ValidationExprError(self.len, self._io, u"/types/command/seq/1")
            _on = self.cmd
            if _on == QemuMigration.CommandType.packaged:
                pass
                self._raw_payload = self._io.read_bytes(self.len)
                _io__raw_payload = KaitaiStream(BytesIO(self._raw_payload))
                self.payload = QemuMigration.CmdPackaged(_io__raw_payload, self, self._root)
            elif _on == QemuMigration.CommandType.ping:
                pass
                self._raw_payload = self._io.read_bytes(self.len)
                _io__raw_payload = KaitaiStream(BytesIO(self._raw_payload))
                self.payload = QemuMigration.CmdPing(_io__raw_payload, self, self._root)
            elif _on == QemuMigration.CommandType.postcopy_advise:
                pass
                self._raw_payload = self._io.read_bytes(self.len)
                _io__raw_payload = KaitaiStream(BytesIO(self._raw_payload))
                self.payload = QemuMigration.CmdPostcopyAdvise(_io__raw_payload, self, self._root)
            elif _on == QemuMigration.CommandType.postcopy_ram_discard:
                pass
                self._raw_payload = self._io.read_bytes(self.len)
                _io__raw_payload = KaitaiStream(BytesIO(self._raw_payload))
                self.payload = QemuMigration.CmdPostcopyRamDiscard(_io__raw_payload, self, self._root)
            elif _on == QemuMigration.CommandType.recv_bitmap:
                pass
                self._raw_payload = self._io.read_bytes(self.len)
                _io__raw_payload = KaitaiStream(BytesIO(self._raw_payload))
                self.payload = QemuMigration.CmdRecvBitmap(_io__raw_payload, self, self._root)
            else:
                pass
                self.payload = self._io.read_bytes(self.len)
            if self.cmd == QemuMigration.CommandType.packaged:
                pass
                self.package = QemuMigration.Package(self.payload.length, self._io.pos(), self.ram_section_id, self.block_section_id, self.bitmap_section_id, self.last_block, self._io, self, self._root)



        def _fetch_instances(self):
            pass
            _on = self.cmd
            if _on == QemuMigration.CommandType.packaged:
                pass
                self.payload._fetch_instances()
            elif _on == QemuMigration.CommandType.ping:
                pass
                self.payload._fetch_instances()
            elif _on == QemuMigration.CommandType.postcopy_advise:
                pass
                self.payload._fetch_instances()
            elif _on == QemuMigration.CommandType.postcopy_ram_discard:
                pass
                self.payload._fetch_instances()
            elif _on == QemuMigration.CommandType.recv_bitmap:
                pass
                self.payload._fetch_instances()
            else:
                pass
            if self.cmd == QemuMigration.CommandType.packaged:
                pass
                self.package._fetch_instances()


        @property
        def bitmap_section_id_after(self):
            """The dirty-bitmap section id after this command (PACKAGED data may open it)."""
            if hasattr(self, '_m_bitmap_section_id_after'):
                return self._m_bitmap_section_id_after

            self._m_bitmap_section_id_after = (self.package.bitmap_section_id_after if self.cmd == QemuMigration.CommandType.packaged else self.bitmap_section_id)
            return getattr(self, '_m_bitmap_section_id_after', None)

        @property
        def block_after(self):
            """The CONTINUE context after this command (PACKAGED data may carry RAM records)."""
            if hasattr(self, '_m_block_after'):
                return self._m_block_after

            self._m_block_after = (self.package.block_after if self.cmd == QemuMigration.CommandType.packaged else self.last_block)
            return getattr(self, '_m_block_after', None)

        @property
        def block_section_id_after(self):
            """The block migration section id after this command (PACKAGED data may open it)."""
            if hasattr(self, '_m_block_section_id_after'):
                return self._m_block_section_id_after

            self._m_block_section_id_after = (self.package.block_section_id_after if self.cmd == QemuMigration.CommandType.packaged else self.block_section_id)
            return getattr(self, '_m_block_section_id_after', None)

        @property
        def expected_len(self):
            """The fixed length of this command, -1 when it varies."""
            if hasattr(self, '_m_expected_len'):
                return self._m_expected_len

            self._m_expected_len = (0 if  ((self.cmd == QemuMigration.CommandType.open_return_path) or (self.cmd == QemuMigration.CommandType.postcopy_listen) or (self.cmd == QemuMigration.CommandType.postcopy_run) or (self.cmd == QemuMigration.CommandType.enable_colo) or (self.cmd == QemuMigration.CommandType.postcopy_resume) or (self.cmd == QemuMigration.CommandType.switchover_start))  else (4 if  ((self.cmd == QemuMigration.CommandType.ping) or (self.cmd == QemuMigration.CommandType.packaged))  else -1))
            return getattr(self, '_m_expected_len', None)

        @property
        def ram_section_id_after(self):
            """The RAM section id after this command (PACKAGED data may open it)."""
            if hasattr(self, '_m_ram_section_id_after'):
                return self._m_ram_section_id_after

            self._m_ram_section_id_after = (self.package.ram_section_id_after if self.cmd == QemuMigration.CommandType.packaged else self.ram_section_id)
            return getattr(self, '_m_ram_section_id_after', None)


    class CompressedPage(KaitaiStruct):
        """RAM_SAVE_FLAG_COMPRESS_PAGE, QEMU 2.4 - 9.0 (ram.c / ram-compress.c do_compress_ram_page)."""
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.CompressedPage, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.len_data = self._io.read_u4be()
            if not self.len_data <= (((self._root.page_size + (self._root.page_size >> 12)) + (self._root.page_size >> 14)) + (self._root.page_size >> 25)) + 13:
                raise kaitaistruct.ValidationGreaterThanError((((self._root.page_size + (self._root.page_size >> 12)) + (self._root.page_size >> 14)) + (self._root.page_size >> 25)) + 13, self.len_data, self._io, u"/types/compressed_page/seq/0")
            self.data = self._io.read_bytes(self.len_data)


        def _fetch_instances(self):
            pass


    class ConfigCapabilities(KaitaiStruct):
        """The migration capabilities the loader must match (savevm.c vmstate_capabilites,
        should_validate_capability: x-ignore-shared and mapped-ram).
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.ConfigCapabilities, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.num_caps = self._io.read_u4be()
            self.caps = []
            for i in range(self.num_caps):
                self.caps.append(QemuMigration.CountedString(self._io, self, self._root))



        def _fetch_instances(self):
            pass
            for i in range(len(self.caps)):
                pass
                self.caps[i]._fetch_instances()



    class ConfigSubsection(KaitaiStruct):
        """QEMU_VM_SUBSECTION, u8 name length, name, be32 version, fields (vmstate.c vmstate_subsection_save)."""
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.ConfigSubsection, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.tag = self._io.read_bytes(1)
            if not self.tag == b"\x05":
                raise kaitaistruct.ValidationNotEqualError(b"\x05", self.tag, self._io, u"/types/config_subsection/seq/0")
            self.len_name = self._io.read_u1()
            self.name = (self._io.read_bytes(self.len_name)).decode(u"ISO-8859-1")
            if not  ((self.name == u"configuration/target-page-bits") or (self.name == u"configuration/capabilities") or (self.name == u"configuration/uuid")) :
                raise kaitaistruct.ValidationNotAnyOfError(self.name, self._io, u"/types/config_subsection/seq/2")
            self.version_id = self._io.read_u4be()
            _on = self.name
            if _on == u"configuration/capabilities":
                pass
                self.body = QemuMigration.ConfigCapabilities(self._io, self, self._root)
            elif _on == u"configuration/target-page-bits":
                pass
                self.body = QemuMigration.ConfigTargetPageBits(self._io, self, self._root)
            elif _on == u"configuration/uuid":
                pass
                self.body = QemuMigration.ConfigUuid(self._io, self, self._root)


        def _fetch_instances(self):
            pass
            _on = self.name
            if _on == u"configuration/capabilities":
                pass
                self.body._fetch_instances()
            elif _on == u"configuration/target-page-bits":
                pass
                self.body._fetch_instances()
            elif _on == u"configuration/uuid":
                pass
                self.body._fetch_instances()
            _ = self.next_tag
            if hasattr(self, '_m_next_tag'):
                pass


        @property
        def next_tag(self):
            """A peek at the byte after this subsection."""
            if hasattr(self, '_m_next_tag'):
                return self._m_next_tag

            _pos = self._io.pos()
            self._io.seek(self._io.pos())
            self._m_next_tag = self._io.read_u1()
            self._io.seek(_pos)
            return getattr(self, '_m_next_tag', None)


    class ConfigTargetPageBits(KaitaiStruct):
        """Sent when TARGET_PAGE_BITS exceeds the target's minimum (savevm.c
        vmstate_target_page_bits); without it the loader assumes the minimum.
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.ConfigTargetPageBits, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.target_page_bits = self._io.read_u4be()


        def _fetch_instances(self):
            pass


    class ConfigUuid(KaitaiStruct):
        """The VM's UUID, sent with capability validate-uuid (savevm.c vmstate_uuid)."""
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.ConfigUuid, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.uuid = self._io.read_bytes(16)


        def _fetch_instances(self):
            pass


    class Configuration(KaitaiStruct):
        """QEMU_VM_CONFIGURATION: vmstate_configuration (savevm.c), sent first when the
        machine type has send-configuration on; the loader then requires it
        ("Configuration section missing").  No section id, no footer.
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.Configuration, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.len_machine = self._io.read_u4be()
            self.machine = (self._io.read_bytes(self.len_machine)).decode(u"ISO-8859-1")
            if self.first_tag == int(QemuMigration.SectionType.subsection):
                pass
                self.subsections = []
                i = 0
                while True:
                    _ = QemuMigration.ConfigSubsection(self._io, self, self._root)
                    self.subsections.append(_)
                    if _.next_tag != int(QemuMigration.SectionType.subsection):
                        break
                    i += 1



        def _fetch_instances(self):
            pass
            if self.first_tag == int(QemuMigration.SectionType.subsection):
                pass
                for i in range(len(self.subsections)):
                    pass
                    self.subsections[i]._fetch_instances()


            _ = self.first_tag
            if hasattr(self, '_m_first_tag'):
                pass


        @property
        def first_tag(self):
            """A peek at the byte after the machine name (0x05 when a subsection follows)."""
            if hasattr(self, '_m_first_tag'):
                return self._m_first_tag

            _pos = self._io.pos()
            self._io.seek(self._io.pos())
            self._m_first_tag = self._io.read_u1()
            self._io.seek(_pos)
            return getattr(self, '_m_first_tag', None)


    class CountedString(KaitaiStruct):
        """u8 length + bytes, no NUL (qemu-file.c qemu_get_counted_string)."""
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.CountedString, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.len = self._io.read_u1()
            self.value = (self._io.read_bytes(self.len)).decode(u"ISO-8859-1")


        def _fetch_instances(self):
            pass


    class DirtyBitmapRecord(KaitaiStruct):
        """One dirty-bitmap record (block-dirty-bitmap.c send_bitmap_header, send_bitmap_start,
        send_bitmap_complete, send_bitmap_bits; read by dirty_bitmap_load_header and
        dirty_bitmap_load_start / _complete / _bits).
        """
        def __init__(self, ofs, _io, _parent=None, _root=None):
            super(QemuMigration.DirtyBitmapRecord, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self.ofs = ofs
            self._read()

        def _read(self):
            self.first_flags = self._io.read_u1()
            if self.first_flags & 128 != 0:
                pass
                self.second_flags = self._io.read_u1()

            if  ((self.first_flags & 128 != 0) and (self.second_flags & 128 != 0)) :
                pass
                self.last_flags = self._io.read_u2be()

            if self.flags & 8 != 0:
                pass
                self.node = QemuMigration.CountedString(self._io, self, self._root)

            if self.flags & 4 != 0:
                pass
                self.bitmap = QemuMigration.CountedString(self._io, self, self._root)

            if self.flags & 16 != 0:
                pass
                self.granularity = self._io.read_u4be()

            if self.flags & 16 != 0:
                pass
                self.bitmap_flags = self._io.read_u1()
                _ = self.bitmap_flags
                if not _ & 248 == 0:
                    raise kaitaistruct.ValidationExprError(self.bitmap_flags, self._io, u"/types/dirty_bitmap_record/seq/6")

            if self.is_bits:
                pass
                self.start_sector = self._io.read_u8be()

            if self.is_bits:
                pass
                self.nr_sectors = self._io.read_u4be()

            if  ((self.is_bits) and (self.flags & 2 == 0)) :
                pass
                self.buffer_size = self._io.read_u8be()
                if not self.buffer_size <= 10240:
                    raise kaitaistruct.ValidationGreaterThanError(10240, self.buffer_size, self._io, u"/types/dirty_bitmap_record/seq/9")

            if  ((self.is_bits) and (self.flags & 2 == 0)) :
                pass
                self.data = self._io.read_bytes(self.buffer_size)



        def _fetch_instances(self):
            pass
            if self.first_flags & 128 != 0:
                pass

            if  ((self.first_flags & 128 != 0) and (self.second_flags & 128 != 0)) :
                pass

            if self.flags & 8 != 0:
                pass
                self.node._fetch_instances()

            if self.flags & 4 != 0:
                pass
                self.bitmap._fetch_instances()

            if self.flags & 16 != 0:
                pass

            if self.flags & 16 != 0:
                pass

            if self.is_bits:
                pass

            if self.is_bits:
                pass

            if  ((self.is_bits) and (self.flags & 2 == 0)) :
                pass

            if  ((self.is_bits) and (self.flags & 2 == 0)) :
                pass


        @property
        def flags(self):
            """The flags in force (the last byte read)."""
            if hasattr(self, '_m_flags'):
                return self._m_flags

            self._m_flags = (self.first_flags if self.first_flags & 128 == 0 else (self.second_flags if self.second_flags & 128 == 0 else self.last_flags & 255))
            return getattr(self, '_m_flags', None)

        @property
        def is_bits(self):
            """A BITS record (START and COMPLETE take precedence in the loader)."""
            if hasattr(self, '_m_is_bits'):
                return self._m_is_bits

            self._m_is_bits =  ((self.flags & 16 == 0) and (self.flags & 32 == 0) and (self.flags & 64 != 0)) 
            return getattr(self, '_m_is_bits', None)


    class DirtyBitmapRecords(KaitaiStruct):
        """The payload of the dirty-bitmap section: records up to and including one with
        EOS (block-dirty-bitmap.c dirty_bitmap_load).
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.DirtyBitmapRecords, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.records = []
            i = 0
            while True:
                _ = QemuMigration.DirtyBitmapRecord(self._io.pos(), self._io, self, self._root)
                self.records.append(_)
                if _.flags & 1 != 0:
                    break
                i += 1


        def _fetch_instances(self):
            pass
            for i in range(len(self.records)):
                pass
                self.records[i]._fetch_instances()



    class DiscardRange(KaitaiStruct):
        """One range of a POSTCOPY_RAM_DISCARD (savevm.c qemu_savevm_send_postcopy_ram_discard)."""
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.DiscardRange, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.start = self._io.read_u8be()
            self.length = self._io.read_u8be()


        def _fetch_instances(self):
            pass


    class Element(KaitaiStruct):
        """One top-level element, introduced by its QEMU_VM_* tag (savevm.c qemu_loadvm_state_main)."""
        def __init__(self, ram_section_id, block_section_id, bitmap_section_id, last_block, ofs, _io, _parent=None, _root=None):
            super(QemuMigration.Element, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self.ram_section_id = ram_section_id
            self.block_section_id = block_section_id
            self.bitmap_section_id = bitmap_section_id
            self.last_block = last_block
            self.ofs = ofs
            self._read()

        def _read(self):
            self.tag = KaitaiStream.resolve_enum(QemuMigration.SectionType, self._io.read_u1())
            if not  ((self.tag == QemuMigration.SectionType.eof) or (self.tag == QemuMigration.SectionType.section_start) or (self.tag == QemuMigration.SectionType.section_part) or (self.tag == QemuMigration.SectionType.section_end) or (self.tag == QemuMigration.SectionType.section_full) or (self.tag == QemuMigration.SectionType.configuration) or (self.tag == QemuMigration.SectionType.command)) :
                raise kaitaistruct.ValidationNotAnyOfError(self.tag, self._io, u"/types/element/seq/0")
            if self.is_section:
                pass
                self.section = QemuMigration.Section(self.tag, self.ram_section_id, self.block_section_id, self.bitmap_section_id, self.last_block, self._io, self, self._root)

            if self.tag == QemuMigration.SectionType.configuration:
                pass
                self.configuration = QemuMigration.Configuration(self._io, self, self._root)

            if self.tag == QemuMigration.SectionType.command:
                pass
                self.command = QemuMigration.Command(self.ram_section_id, self.block_section_id, self.bitmap_section_id, self.last_block, self._io, self, self._root)



        def _fetch_instances(self):
            pass
            if self.is_section:
                pass
                self.section._fetch_instances()

            if self.tag == QemuMigration.SectionType.configuration:
                pass
                self.configuration._fetch_instances()

            if self.tag == QemuMigration.SectionType.command:
                pass
                self.command._fetch_instances()


        @property
        def bitmap_section_id_after(self):
            """The dirty-bitmap section id after this element (for the next one)."""
            if hasattr(self, '_m_bitmap_section_id_after'):
                return self._m_bitmap_section_id_after

            self._m_bitmap_section_id_after = (self.section.bitmap_section_id_after if self.is_section else (self.command.bitmap_section_id_after if self.tag == QemuMigration.SectionType.command else self.bitmap_section_id))
            return getattr(self, '_m_bitmap_section_id_after', None)

        @property
        def block_after(self):
            """The CONTINUE context after this element (for the next one)."""
            if hasattr(self, '_m_block_after'):
                return self._m_block_after

            self._m_block_after = (self.section.block_after if self.is_section else (self.command.block_after if self.tag == QemuMigration.SectionType.command else self.last_block))
            return getattr(self, '_m_block_after', None)

        @property
        def block_section_id_after(self):
            """The block migration section id after this element (for the next one)."""
            if hasattr(self, '_m_block_section_id_after'):
                return self._m_block_section_id_after

            self._m_block_section_id_after = (self.section.block_section_id_after if self.is_section else (self.command.block_section_id_after if self.tag == QemuMigration.SectionType.command else self.block_section_id))
            return getattr(self, '_m_block_section_id_after', None)

        @property
        def is_section(self):
            """The tag introduces a section (START, PART, END, FULL)."""
            if hasattr(self, '_m_is_section'):
                return self._m_is_section

            self._m_is_section =  ((self.tag == QemuMigration.SectionType.section_start) or (self.tag == QemuMigration.SectionType.section_part) or (self.tag == QemuMigration.SectionType.section_end) or (self.tag == QemuMigration.SectionType.section_full)) 
            return getattr(self, '_m_is_section', None)

        @property
        def ram_section_id_after(self):
            """The RAM section id after this element (for the next one)."""
            if hasattr(self, '_m_ram_section_id_after'):
                return self._m_ram_section_id_after

            self._m_ram_section_id_after = (self.section.ram_section_id_after if self.is_section else (self.command.ram_section_id_after if self.tag == QemuMigration.SectionType.command else self.ram_section_id))
            return getattr(self, '_m_ram_section_id_after', None)


    class FooterLookahead(KaitaiStruct):
        """The 5 bytes after a 0x7e candidate (fewer at the end of the stream)."""
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.FooterLookahead, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            if self.has_id:
                pass
                self.section_id = self._io.read_u4be()

            if self.has_next:
                pass
                self.next_tag = self._io.read_u1()



        def _fetch_instances(self):
            pass
            if self.has_id:
                pass

            if self.has_next:
                pass


        @property
        def has_id(self):
            """At least 4 bytes remain."""
            if hasattr(self, '_m_has_id'):
                return self._m_has_id

            self._m_has_id = self._io.size() - self._io.pos() >= 4
            return getattr(self, '_m_has_id', None)

        @property
        def has_next(self):
            """At least 5 bytes remain."""
            if hasattr(self, '_m_has_next'):
                return self._m_has_next

            self._m_has_next = self._io.size() - self._io.pos() >= 5
            return getattr(self, '_m_has_next', None)


    class FooterSearch(KaitaiStruct):
        """Kaitai cannot search for a byte string, so this reads the payload in pieces
        that end at each 0x7e byte until one is followed by the section id and a byte
        that can start the next element (EOF, START, PART, END, FULL, COMMAND): the
        same rule as migstream's decoder uses when it has no JSON description
        (decoder.py _scan_footer).  Section ids are unique, which makes a false hit
        inside a payload rare; with the description QEMU wrote, the decoder can check
        the sizes instead.
        """
        def __init__(self, section_id, start, _io, _parent=None, _root=None):
            super(QemuMigration.FooterSearch, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self.section_id = section_id
            self.start = start
            self._read()

        def _read(self):
            self.pieces = []
            i = 0
            while True:
                _ = QemuMigration.FooterSearchPiece(self.section_id, self._io, self, self._root)
                self.pieces.append(_)
                if _.footer_found:
                    break
                i += 1


        def _fetch_instances(self):
            pass
            for i in range(len(self.pieces)):
                pass
                self.pieces[i]._fetch_instances()


        @property
        def size(self):
            """Payload bytes before the footer."""
            if hasattr(self, '_m_size'):
                return self._m_size

            self._m_size = self.pieces[-1].footer_pos - self.start
            return getattr(self, '_m_size', None)


    class FooterSearchPiece(KaitaiStruct):
        """Payload bytes up to a 0x7e byte, and whether that byte starts the section footer."""
        def __init__(self, section_id, _io, _parent=None, _root=None):
            super(QemuMigration.FooterSearchPiece, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self.section_id = section_id
            self._read()

        def _read(self):
            self.data = self._io.read_bytes_term(126, False, True, True)


        def _fetch_instances(self):
            pass
            _ = self.lookahead
            if hasattr(self, '_m_lookahead'):
                pass
                self._m_lookahead._fetch_instances()


        @property
        def after(self):
            """Position after the 0x7e; first read by footer_found, right after `data`."""
            if hasattr(self, '_m_after'):
                return self._m_after

            self._m_after = self._io.pos()
            return getattr(self, '_m_after', None)

        @property
        def footer_found(self):
            """0x7e + this section's id + a byte that can start the next element (or the end): the footer."""
            if hasattr(self, '_m_footer_found'):
                return self._m_footer_found

            self._m_footer_found =  ((self.lookahead.has_id) and (self.lookahead.section_id == self.section_id) and ( (((not (self.lookahead.has_next))) or (self.lookahead.next_tag == 0) or (self.lookahead.next_tag == 1) or (self.lookahead.next_tag == 2) or (self.lookahead.next_tag == 3) or (self.lookahead.next_tag == 4) or (self.lookahead.next_tag == 8)) )) 
            return getattr(self, '_m_footer_found', None)

        @property
        def footer_pos(self):
            """Position of this piece's 0x7e byte."""
            if hasattr(self, '_m_footer_pos'):
                return self._m_footer_pos

            self._m_footer_pos = self.after - 1
            return getattr(self, '_m_footer_pos', None)

        @property
        def lookahead(self):
            """The bytes after the 0x7e, read without moving on."""
            if hasattr(self, '_m_lookahead'):
                return self._m_lookahead

            _pos = self._io.pos()
            self._io.seek(self.after)
            self._m_lookahead = QemuMigration.FooterLookahead(self._io, self, self._root)
            self._io.seek(_pos)
            return getattr(self, '_m_lookahead', None)


    class MappedRamHeader(KaitaiStruct):
        """MappedRamHeader (packed, big-endian), ram.c mapped_ram_setup_ramblock."""
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.MappedRamHeader, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.version = self._io.read_u4be()
            self.page_size = self._io.read_u8be()
            self.bitmap_offset = self._io.read_u8be()
            self.pages_offset = self._io.read_u8be()


        def _fetch_instances(self):
            pass


    class Package(KaitaiStruct):
        """The data of a PACKAGED command: a nested stream of sections and commands
        without file header (postcopy sends the device state this way, with no EOF
        inside).  The loader parses it as its own stream and stops at EOF or at its
        end; an element that runs past the end is an error here (the pieces after a
        nested EOF are skipped, as the loader does).
        """
        def __init__(self, length, start, ram_section_id, block_section_id, bitmap_section_id, last_block, _io, _parent=None, _root=None):
            super(QemuMigration.Package, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self.length = length
            self.start = start
            self.ram_section_id = ram_section_id
            self.block_section_id = block_section_id
            self.bitmap_section_id = bitmap_section_id
            self.last_block = last_block
            self._read()

        def _read(self):
            if self.length > 0:
                pass
                self.elements = []
                i = 0
                while True:
                    _ = QemuMigration.Element((self.ram_section_id if i == 0 else self.elements[i - 1].ram_section_id_after), (self.block_section_id if i == 0 else self.elements[i - 1].block_section_id_after), (self.bitmap_section_id if i == 0 else self.elements[i - 1].bitmap_section_id_after), (self.last_block if i == 0 else self.elements[i - 1].block_after), self._io.pos(), self._io, self, self._root)
                    self.elements.append(_)
                    if  ((_.tag == QemuMigration.SectionType.eof) or (self._io.pos() >= self.start + self.length)) :
                        break
                    i += 1

            self.rest = self._io.read_bytes((self.start + self.length) - self._io.pos())


        def _fetch_instances(self):
            pass
            if self.length > 0:
                pass
                for i in range(len(self.elements)):
                    pass
                    self.elements[i]._fetch_instances()



        @property
        def bitmap_section_id_after(self):
            """The dirty-bitmap section id after the package."""
            if hasattr(self, '_m_bitmap_section_id_after'):
                return self._m_bitmap_section_id_after

            self._m_bitmap_section_id_after = (self.elements[-1].bitmap_section_id_after if self.length > 0 else self.bitmap_section_id)
            return getattr(self, '_m_bitmap_section_id_after', None)

        @property
        def block_after(self):
            """The CONTINUE context after the package."""
            if hasattr(self, '_m_block_after'):
                return self._m_block_after

            self._m_block_after = (self.elements[-1].block_after if self.length > 0 else self.last_block)
            return getattr(self, '_m_block_after', None)

        @property
        def block_section_id_after(self):
            """The block migration section id after the package."""
            if hasattr(self, '_m_block_section_id_after'):
                return self._m_block_section_id_after

            self._m_block_section_id_after = (self.elements[-1].block_section_id_after if self.length > 0 else self.block_section_id)
            return getattr(self, '_m_block_section_id_after', None)

        @property
        def ram_section_id_after(self):
            """The RAM section id after the package."""
            if hasattr(self, '_m_ram_section_id_after'):
                return self._m_ram_section_id_after

            self._m_ram_section_id_after = (self.elements[-1].ram_section_id_after if self.length > 0 else self.ram_section_id)
            return getattr(self, '_m_ram_section_id_after', None)


    class RamBlockEntry(KaitaiStruct):
        """One RAM block in the MEM_SIZE list (ram.c ram_save_setup)."""
        def __init__(self, remaining, _io, _parent=None, _root=None):
            super(QemuMigration.RamBlockEntry, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self.remaining = remaining
            self._read()

        def _read(self):
            self.idstr = QemuMigration.CountedString(self._io, self, self._root)
            self.used_length = self._io.read_u8be()
            if self._root.postcopy_hugepages:
                pass
                self.page_size = self._io.read_u8be()

            if self._root.ignore_shared:
                pass
                self.gpa = self._io.read_u8be()

            if self._root.mapped_ram:
                pass
                self.mapped_ram_header = QemuMigration.MappedRamHeader(self._io, self, self._root)

            if  ((self._root.mapped_ram) and (self.mapped_ram_header.pages_offset != 0)) :
                pass
                self.mapped_ram_region = self._io.read_bytes((self.mapped_ram_header.pages_offset + self.used_length) - self._io.pos())



        def _fetch_instances(self):
            pass
            self.idstr._fetch_instances()
            if self._root.postcopy_hugepages:
                pass

            if self._root.ignore_shared:
                pass

            if self._root.mapped_ram:
                pass
                self.mapped_ram_header._fetch_instances()

            if  ((self._root.mapped_ram) and (self.mapped_ram_header.pages_offset != 0)) :
                pass


        @property
        def remaining_after(self):
            """The part of the total left for the blocks after this one."""
            if hasattr(self, '_m_remaining_after'):
                return self._m_remaining_after

            self._m_remaining_after = self.remaining - self.used_length
            return getattr(self, '_m_remaining_after', None)


    class RamRecord(KaitaiStruct):
        """be64 (page offset | flags), then for page records without CONTINUE the block
        name, then a payload that depends on the flags (ram.c save_page_header,
        ram_load_precopy).
        """
        def __init__(self, prev_block, ofs, _io, _parent=None, _root=None):
            super(QemuMigration.RamRecord, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self.prev_block = prev_block
            self.ofs = ofs
            self._read()

        def _read(self):
            self.addr_flags = self._io.read_u8be()
            _ = self.addr_flags
            if not  (( ((self.kind_value == 2) or (self.kind_value == 4) or (self.kind_value == 8) or (self.kind_value == 16) or (self.kind_value == 64) or (self.kind_value == 128) or (self.kind_value == 256) or (self.kind_value == 512)) ) and ( (((not (self.is_page))) or ((not (self.is_continue))) or (self.prev_block != u"")) )) :
                raise kaitaistruct.ValidationExprError(self.addr_flags, self._io, u"/types/ram_record/seq/0")
            if self.has_idstr:
                pass
                self.idstr = QemuMigration.CountedString(self._io, self, self._root)

            _on = self.kind
            if _on == QemuMigration.RamFlag.compress_page:
                pass
                self.body = QemuMigration.CompressedPage(self._io, self, self._root)
            elif _on == QemuMigration.RamFlag.mem_size:
                pass
                self.body = QemuMigration.BlockList(self.addr, self._io, self, self._root)
            elif _on == QemuMigration.RamFlag.page:
                pass
                self.body = QemuMigration.RawPage(self._io, self, self._root)
            elif _on == QemuMigration.RamFlag.xbzrle:
                pass
                self.body = QemuMigration.XbzrlePage(self._io, self, self._root)
            elif _on == QemuMigration.RamFlag.zero:
                pass
                self.body = QemuMigration.ZeroPage(self._io, self, self._root)


        def _fetch_instances(self):
            pass
            if self.has_idstr:
                pass
                self.idstr._fetch_instances()

            _on = self.kind
            if _on == QemuMigration.RamFlag.compress_page:
                pass
                self.body._fetch_instances()
            elif _on == QemuMigration.RamFlag.mem_size:
                pass
                self.body._fetch_instances()
            elif _on == QemuMigration.RamFlag.page:
                pass
                self.body._fetch_instances()
            elif _on == QemuMigration.RamFlag.xbzrle:
                pass
                self.body._fetch_instances()
            elif _on == QemuMigration.RamFlag.zero:
                pass
                self.body._fetch_instances()

        @property
        def addr(self):
            """Offset of the page inside its block; for MEM_SIZE the total RAM size."""
            if hasattr(self, '_m_addr'):
                return self._m_addr

            self._m_addr = self.addr_flags - self.flags
            return getattr(self, '_m_addr', None)

        @property
        def block(self):
            """The block this record targets (page records), or the context it passes on."""
            if hasattr(self, '_m_block'):
                return self._m_block

            self._m_block = (self.idstr.value if self.has_idstr else self.prev_block)
            return getattr(self, '_m_block', None)

        @property
        def flags(self):
            """RAM_SAVE_FLAG_* bits (ram.h)."""
            if hasattr(self, '_m_flags'):
                return self._m_flags

            self._m_flags = self.addr_flags & self._root.page_size - 1
            return getattr(self, '_m_flags', None)

        @property
        def has_idstr(self):
            """A page record without CONTINUE: the block name follows the header."""
            if hasattr(self, '_m_has_idstr'):
                return self._m_has_idstr

            self._m_has_idstr =  ((self.is_page) and ((not (self.is_continue)))) 
            return getattr(self, '_m_has_idstr', None)

        @property
        def is_continue(self):
            """RAM_SAVE_FLAG_CONTINUE, "same block as the previous page record"."""
            if hasattr(self, '_m_is_continue'):
                return self._m_is_continue

            self._m_is_continue = self.flags & 32 != 0
            return getattr(self, '_m_is_continue', None)

        @property
        def is_page(self):
            """ZERO, PAGE, XBZRLE, COMPRESS_PAGE target one page of one block."""
            if hasattr(self, '_m_is_page'):
                return self._m_is_page

            self._m_is_page =  ((self.kind_value == 2) or (self.kind_value == 8) or (self.kind_value == 64) or (self.kind_value == 256)) 
            return getattr(self, '_m_is_page', None)

        @property
        def kind(self):
            """The record kind as a RAM_SAVE_FLAG_* name."""
            if hasattr(self, '_m_kind'):
                return self._m_kind

            self._m_kind = KaitaiStream.resolve_enum(QemuMigration.RamFlag, self.kind_value)
            return getattr(self, '_m_kind', None)

        @property
        def kind_value(self):
            """The flags without CONTINUE: what the loader switches on."""
            if hasattr(self, '_m_kind_value'):
                return self._m_kind_value

            self._m_kind_value = self.flags - (self.flags & 32)
            return getattr(self, '_m_kind_value', None)


    class RamRecords(KaitaiStruct):
        """The payload of the RAM section: records up to and including EOS (ram.c
        ram_load_precopy / ram_load_postcopy loop until RAM_SAVE_FLAG_EOS).
        """
        def __init__(self, block_before, _io, _parent=None, _root=None):
            super(QemuMigration.RamRecords, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self.block_before = block_before
            self._read()

        def _read(self):
            self.records = []
            i = 0
            while True:
                _ = QemuMigration.RamRecord((self.block_before if i == 0 else self.records[i - 1].block), self._io.pos(), self._io, self, self._root)
                self.records.append(_)
                if _.kind == QemuMigration.RamFlag.eos:
                    break
                i += 1


        def _fetch_instances(self):
            pass
            for i in range(len(self.records)):
                pass
                self.records[i]._fetch_instances()


        @property
        def block_after(self):
            """The CONTINUE context after the last record (EOS passes it on)."""
            if hasattr(self, '_m_block_after'):
                return self._m_block_after

            self._m_block_after = self.records[-1].block
            return getattr(self, '_m_block_after', None)


    class RawPage(KaitaiStruct):
        """RAM_SAVE_FLAG_PAGE, ram.c save_normal_page."""
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.RawPage, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.data = self._io.read_bytes(self._root.page_size)


        def _fetch_instances(self):
            pass


    class Section(KaitaiStruct):
        """A START, PART, END or FULL section (savevm.c save_section_header,
        qemu_loadvm_section_start_full / qemu_loadvm_section_part_end), its payload
        and its footer.
        """
        def __init__(self, tag, ram_section_id, block_section_id, bitmap_section_id, last_block, _io, _parent=None, _root=None):
            super(QemuMigration.Section, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self.tag = tag
            self.ram_section_id = ram_section_id
            self.block_section_id = block_section_id
            self.bitmap_section_id = bitmap_section_id
            self.last_block = last_block
            self._read()

        def _read(self):
            self.section_id = self._io.read_u4be()
            if self.has_header:
                pass
                self.idstr = QemuMigration.CountedString(self._io, self, self._root)

            if self.has_header:
                pass
                self.instance_id = self._io.read_u4be()

            if self.has_header:
                pass
                self.version_id = self._io.read_u4be()
                _ = self.version_id
                if not  (((not (self.is_ram))) or (_ == 4)) :
                    raise kaitaistruct.ValidationExprError(self.version_id, self._io, u"/types/section/seq/3")

            if self.is_ram:
                pass
                self.ram = QemuMigration.RamRecords(self.last_block, self._io, self, self._root)

            if self.is_dirty_bitmap:
                pass
                self.dirty_bitmap = QemuMigration.DirtyBitmapRecords(self._io, self, self._root)

            if self.is_block:
                pass
                self.block = QemuMigration.BlockRecords(self._io, self, self._root)

            if  (((not (self.is_ram))) and ((not (self.is_block))) and ((not (self.is_dirty_bitmap)))) :
                pass
                self.device_state = self._io.read_bytes(self.device_state_framing.size)

            if self.footer_tag == int(QemuMigration.SectionType.footer):
                pass
                self.footer = QemuMigration.SectionFooter(self.section_id, self._io, self, self._root)



        def _fetch_instances(self):
            pass
            if self.has_header:
                pass
                self.idstr._fetch_instances()

            if self.has_header:
                pass

            if self.has_header:
                pass

            if self.is_ram:
                pass
                self.ram._fetch_instances()

            if self.is_dirty_bitmap:
                pass
                self.dirty_bitmap._fetch_instances()

            if self.is_block:
                pass
                self.block._fetch_instances()

            if  (((not (self.is_ram))) and ((not (self.is_block))) and ((not (self.is_dirty_bitmap)))) :
                pass

            if self.footer_tag == int(QemuMigration.SectionType.footer):
                pass
                self.footer._fetch_instances()

            _ = self.device_state_framing
            if hasattr(self, '_m_device_state_framing'):
                pass
                self._m_device_state_framing._fetch_instances()

            _ = self.footer_tag
            if hasattr(self, '_m_footer_tag'):
                pass


        @property
        def bitmap_section_id_after(self):
            """This section's id if it opens the dirty-bitmap section, else the one passed in."""
            if hasattr(self, '_m_bitmap_section_id_after'):
                return self._m_bitmap_section_id_after

            self._m_bitmap_section_id_after = (self.section_id if  ((self.tag == QemuMigration.SectionType.section_start) and (self.is_dirty_bitmap))  else self.bitmap_section_id)
            return getattr(self, '_m_bitmap_section_id_after', None)

        @property
        def block_after(self):
            """The CONTINUE context after this section's RAM records."""
            if hasattr(self, '_m_block_after'):
                return self._m_block_after

            self._m_block_after = (self.ram.block_after if self.is_ram else self.last_block)
            return getattr(self, '_m_block_after', None)

        @property
        def block_section_id_after(self):
            """This section's id if it opens the block migration section, else the one passed in."""
            if hasattr(self, '_m_block_section_id_after'):
                return self._m_block_section_id_after

            self._m_block_section_id_after = (self.section_id if  ((self.tag == QemuMigration.SectionType.section_start) and (self.is_block))  else self.block_section_id)
            return getattr(self, '_m_block_section_id_after', None)

        @property
        def device_state_framing(self):
            """Evaluated where the payload starts; finds where the footer begins."""
            if hasattr(self, '_m_device_state_framing'):
                return self._m_device_state_framing

            _pos = self._io.pos()
            self._io.seek(self._io.pos())
            self._m_device_state_framing = QemuMigration.FooterSearch(self.section_id, self._io.pos(), self._io, self, self._root)
            self._io.seek(_pos)
            return getattr(self, '_m_device_state_framing', None)

        @property
        def footer_tag(self):
            """A peek at the byte after the payload (0x7e when a footer follows)."""
            if hasattr(self, '_m_footer_tag'):
                return self._m_footer_tag

            _pos = self._io.pos()
            self._io.seek(self._io.pos())
            self._m_footer_tag = self._io.read_u1()
            self._io.seek(_pos)
            return getattr(self, '_m_footer_tag', None)

        @property
        def has_header(self):
            """START and FULL carry idstr, instance and version; PART and END only the id."""
            if hasattr(self, '_m_has_header'):
                return self._m_has_header

            self._m_has_header =  ((self.tag == QemuMigration.SectionType.section_start) or (self.tag == QemuMigration.SectionType.section_full)) 
            return getattr(self, '_m_has_header', None)

        @property
        def is_block(self):
            """The block migration section (capability "block", QEMU 1.0 - 9.0): opened by a
            START named "block", continued by PART/END sections with its id.
            """
            if hasattr(self, '_m_is_block'):
                return self._m_is_block

            self._m_is_block =  (((not (self.is_ram))) and (( ((self.tag == QemuMigration.SectionType.section_start) and (self.idstr.value == u"block"))  if self.has_header else self.section_id == self.block_section_id))) 
            return getattr(self, '_m_is_block', None)

        @property
        def is_dirty_bitmap(self):
            """The dirty-bitmap section (capability dirty-bitmaps): opened by a START named
            "dirty-bitmap", continued by PART/END sections with its id.
            """
            if hasattr(self, '_m_is_dirty_bitmap'):
                return self._m_is_dirty_bitmap

            self._m_is_dirty_bitmap =  (((not (self.is_ram))) and (( ((self.tag == QemuMigration.SectionType.section_start) and (self.idstr.value == u"dirty-bitmap"))  if self.has_header else self.section_id == self.bitmap_section_id))) 
            return getattr(self, '_m_is_dirty_bitmap', None)

        @property
        def is_ram(self):
            """The live RAM section: opened by a START named "ram", instance 0, continued
            by PART/END sections with its id.  A FULL section named "ram" is opaque.
            """
            if hasattr(self, '_m_is_ram'):
                return self._m_is_ram

            self._m_is_ram = ( ((self.tag == QemuMigration.SectionType.section_start) and (self.idstr.value == u"ram") and (self.instance_id == 0))  if self.has_header else self.section_id == self.ram_section_id)
            return getattr(self, '_m_is_ram', None)

        @property
        def ram_section_id_after(self):
            """This section's id if it opens the RAM section, else the one passed in."""
            if hasattr(self, '_m_ram_section_id_after'):
                return self._m_ram_section_id_after

            self._m_ram_section_id_after = (self.section_id if  ((self.tag == QemuMigration.SectionType.section_start) and (self.is_ram))  else self.ram_section_id)
            return getattr(self, '_m_ram_section_id_after', None)


    class SectionFooter(KaitaiStruct):
        """QEMU_VM_SECTION_FOOTER + be32 section id (savevm.c save_section_footer)."""
        def __init__(self, expected_section_id, _io, _parent=None, _root=None):
            super(QemuMigration.SectionFooter, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self.expected_section_id = expected_section_id
            self._read()

        def _read(self):
            self.tag = self._io.read_bytes(1)
            if not self.tag == b"\x7E":
                raise kaitaistruct.ValidationNotEqualError(b"\x7E", self.tag, self._io, u"/types/section_footer/seq/0")
            self.section_id = self._io.read_u4be()
            if not self.section_id == self.expected_section_id:
                raise kaitaistruct.ValidationNotEqualError(self.expected_section_id, self.section_id, self._io, u"/types/section_footer/seq/1")


        def _fetch_instances(self):
            pass


    class Vmdescription(KaitaiStruct):
        """QEMU_VM_VMDESCRIPTION after EOF: be32 length + JSON text describing every
        FULL section's fields (savevm.c qemu_savevm_state_complete_precopy_non_iterable,
        vmstate.c vmsd_desc_field_start/end).
        """
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.Vmdescription, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.tag = self._io.read_bytes(1)
            if not self.tag == b"\x06":
                raise kaitaistruct.ValidationNotEqualError(b"\x06", self.tag, self._io, u"/types/vmdescription/seq/0")
            self.len_json = self._io.read_u4be()
            self.json = self._io.read_bytes(self.len_json)


        def _fetch_instances(self):
            pass


    class XbzrlePage(KaitaiStruct):
        """RAM_SAVE_FLAG_XBZRLE, ram.c save_xbzrle_page / load_xbzrle (format in migration/xbzrle.c)."""
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.XbzrlePage, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.encoding = self._io.read_u1()
            if not self.encoding == 1:
                raise kaitaistruct.ValidationNotEqualError(1, self.encoding, self._io, u"/types/xbzrle_page/seq/0")
            self.len_data = self._io.read_u2be()
            if not self.len_data <= self._root.page_size:
                raise kaitaistruct.ValidationGreaterThanError(self._root.page_size, self.len_data, self._io, u"/types/xbzrle_page/seq/1")
            self.data = self._io.read_bytes(self.len_data)


        def _fetch_instances(self):
            pass


    class ZeroPage(KaitaiStruct):
        """RAM_SAVE_FLAG_ZERO (once RAM_SAVE_FLAG_COMPRESS), ram.c save_zero_page."""
        def __init__(self, _io, _parent=None, _root=None):
            super(QemuMigration.ZeroPage, self).__init__(_io)
            self._parent = _parent
            self._root = _root
            self._read()

        def _read(self):
            self.fill = self._io.read_u1()


        def _fetch_instances(self):
            pass


    @property
    def after_eof(self):
        """A peek at the byte after EOF."""
        if hasattr(self, '_m_after_eof'):
            return self._m_after_eof

        if (not (self._io.is_eof())):
            pass
            _pos = self._io.pos()
            self._io.seek(self._io.pos())
            self._m_after_eof = self._io.read_u1()
            self._io.seek(_pos)

        return getattr(self, '_m_after_eof', None)

    @property
    def has_vmdescription(self):
        """Whether a VMDESCRIPTION follows EOF."""
        if hasattr(self, '_m_has_vmdescription'):
            return self._m_has_vmdescription

        self._m_has_vmdescription =  (((not (self._io.is_eof()))) and (self.after_eof == int(QemuMigration.SectionType.vmdescription))) 
        return getattr(self, '_m_has_vmdescription', None)


