"""QEMU 10.0 streams (captured with samples/make_samples.py multifd; byte-exact RAM for all
of them is checked in test_samples.py): what is new in them."""

import json
import subprocess
import sys

from migstream.containers.multifd import with_channels
from migstream.containers.sources import StreamSource
from migstream.containers.stream import iter_events
from migstream.containers.stream import open_decoder
from migstream.events import CommandEvent
from migstream.events import MultifdPacket
from migstream.events import PageRecord
from migstream.events import PageRun
from migstream.events import RamMarker
from migstream.events import SectionStart
from migstream.wire.grammar import Command
from migstream.wire.grammar import RamFlag
from migstream.wire.grammar import SectionType
from support.samples import SAMPLES
from support.samples import channel_files
from support.samples import sample_by_name


def events_of(name, channels=()):
    with StreamSource(str(SAMPLES / sample_by_name(name)["stream"])) as src:
        dec = open_decoder(src)
        return list(with_channels(iter_events(src, dec), list(channels), dec)), dec


def page_kinds(events, block="pc.ram"):
    kinds = {}
    for ev in events:
        if type(ev) is PageRun and ev.block == block:
            for k in ev.kinds:
                kinds[k] = kinds.get(k, 0) + 1
        elif type(ev) is PageRecord and ev.block == block:
            kinds[int(ev.kind)] = kinds.get(int(ev.kind), 0) + 1
    return kinds


def test_switchover_start_before_ram_end():
    events, dec = events_of("q10-running")
    assert dec.configuration.machine == "pc-i440fx-10.0"
    cmds = [i for i, e in enumerate(events) if type(e) is CommandEvent]
    assert [events[i].cmd for i in cmds] == [Command.SWITCHOVER_START]
    assert events[cmds[0]].length == 0
    nxt = events[cmds[0] + 1]
    assert type(nxt) is SectionStart and nxt.type == SectionType.END and nxt.idstr == "ram"
    parts = [e for e in events if type(e) is SectionStart and e.type == SectionType.PART and e.idstr == "ram"]
    assert len(parts) >= 3  # a running guest: several iterations


def test_info_names_the_command():
    proc = subprocess.run(
        [sys.executable, "-m", "migstream.cli", "info", "--json", str(SAMPLES / "q10-running.mig.zst")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["commands"] == {"SWITCHOVER_START": 1}
    assert doc["machine"] == "pc-i440fx-10.0" and doc["ram_complete"] is True


def test_zero_page_detection_none_sends_zero_pages_as_pages():
    none = page_kinds(events_of("q10-zpd-none")[0])
    default = page_kinds(events_of("q10-running")[0])
    # 32 MiB = 8192 pages, all of them PAGE records with detection off.
    assert none.get(int(RamFlag.ZERO), 0) == 0 and none[int(RamFlag.PAGE)] >= 8192
    assert default[int(RamFlag.ZERO)] > 4000


def test_zero_page_detection_legacy_with_multifd_uses_zero_records():
    name = "q10-multifd-zpd-legacy"
    events, _ = events_of(name, channel_files(sample_by_name(name)))
    packets = [e for e in events if type(e) is MultifdPacket]
    assert sum(len(p.zero) for p in packets) == 0
    assert page_kinds(events).get(int(RamFlag.ZERO), 0) > 4000
    assert sum(len(p.normal) for p in packets) > 1700


def test_multifd_main_stream_carries_flush_not_pages():
    name = "q10-multifd-nocomp"
    events, _ = events_of(name)
    assert page_kinds(events) == {}
    flushes = [e for e in events if type(e) is RamMarker and e.kind == RamFlag.MULTIFD_FLUSH]
    assert len(flushes) == 6


def test_mapped_ram_capability_in_configuration():
    events, dec = events_of("q10-mapped-ram-multifd")
    assert set(dec.configuration.capabilities) == {"mapped-ram"}
    assert not [e for e in events if type(e) is RamMarker and e.kind == RamFlag.MULTIFD_FLUSH]
