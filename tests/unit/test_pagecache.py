"""XbzrleCache follows migration/page_cache.c (QEMU 7.2): direct-mapped slots by
global RAM address, hits refresh the age, a fresh page of another address is not
evicted for CACHED_PAGE_LIFETIME (2) syncs.  Unit cases from the C code, then
replays of real QEMU 7.2 captures (samples/make_samples.py xbzrle-deltas)."""

import numpy as np
import pytest

from migstream.codecs.xbzrle import xbzrle_encode
from migstream.encode import pagecache
from migstream.encode.pagecache import CACHED_PAGE_LIFETIME
from migstream.encode.pagecache import XbzrleCache
from migstream.errors import UsageError
from migstream.wire.grammar import RamFlag
from migstream.wire.grammar import SectionType
from support.page_history import page_changes
from support.samples import load_samples

PS = 4096


def page(byte: int) -> bytes:
    return bytes([byte]) * PS


def test_slots_and_one_preallocated_buffer():
    c = XbzrleCache(8 << 20, PS)  # the x86-xbzrle capture's cache: 8 MiB
    assert c.slots == 2048
    assert c.pages.shape == (2048, PS) and c.pages.dtype == np.uint8
    assert c.num_items == 0


@pytest.mark.parametrize("size", [PS - 1, 0, 3 * PS, (8 << 20) + PS, 5 << 20])
def test_sizes_qemu_refuses(size):
    # migrate-set-parameters: "a power of two no less than the target page size"
    with pytest.raises(UsageError):
        XbzrleCache(size, PS)


def test_slot_index_is_the_global_page_number_modulo_slots():
    c = XbzrleCache(4 * PS, PS)
    assert [c.slot(a * PS) for a in range(10)] == [0, 1, 2, 3, 0, 1, 2, 3, 0, 1]


def test_miss_then_insert_then_hit():
    c = XbzrleCache(4 * PS, PS)
    assert not c.is_cached(5 * PS, 0)
    assert c.get(5 * PS) is None  # get_cached_data of a never-used slot is NULL
    assert c.insert(5 * PS, page(7), 0)
    assert c.num_items == 1
    assert c.is_cached(5 * PS, 0)
    assert bytes(c.get(5 * PS)) == page(7)
    # The neighbour sharing the slot (5 & 3 == 1 & 3) is not a hit.
    assert not c.is_cached(1 * PS, 0)


def test_get_is_a_writable_view_of_the_cached_page():
    c = XbzrleCache(4 * PS, PS)
    c.insert(0, page(1), 0)
    view = c.get(0)
    view[:] = np.frombuffer(page(9), np.uint8)  # ram.c updates the cache in place
    assert bytes(c.get(0)) == page(9)


def test_insert_copies_the_data():
    c = XbzrleCache(4 * PS, PS)
    src = np.frombuffer(page(3), np.uint8).copy()
    c.insert(PS, src, 0)
    src[:] = 4
    assert bytes(c.get(PS)) == page(3)


def test_fresh_page_of_another_address_is_not_evicted():
    c = XbzrleCache(4 * PS, PS)
    assert c.insert(0, page(1), 10)
    # Slot 0 is also page 4's: refused while 10 + 2 > age, i.e. at ages 10 and 11.
    for age in (10, 11):
        assert not c.insert(4 * PS, page(2), age)
        assert c.is_cached(0, 10)  # still the old page (age stays 10)
    assert c.insert(4 * PS, page(2), 10 + CACHED_PAGE_LIFETIME)
    assert not c.is_cached(0, 12) and c.is_cached(4 * PS, 12)
    assert bytes(c.get(4 * PS)) == page(2)
    assert c.num_items == 1  # the slot was reused, not allocated again


def test_a_hit_refreshes_the_age_and_postpones_eviction():
    c = XbzrleCache(4 * PS, PS)
    c.insert(0, page(1), 0)
    assert c.is_cached(0, 5)  # looked up at age 5
    assert not c.insert(4 * PS, page(2), 6)
    assert c.insert(4 * PS, page(2), 7)


def test_same_address_is_always_replaced():
    c = XbzrleCache(4 * PS, PS)
    c.insert(2 * PS, page(1), 3)
    assert c.insert(2 * PS, page(2), 3)  # no lifetime rule for the page itself
    assert bytes(c.get(2 * PS)) == page(2)


def test_contains_does_not_refresh():
    c = XbzrleCache(4 * PS, PS)
    c.insert(0, page(1), 0)
    assert 0 in c and 4 * PS not in c
    assert c.insert(4 * PS, page(2), 2)  # age still 0: evictable at 2


def test_other_page_sizes():
    c = XbzrleCache(1 << 20, 65536)  # ppc64 pages
    assert c.slots == 16
    assert c.slot(17 * 65536) == 1


# Which alternately mutated set test page k belongs to (samples/make_samples.py xbzrle-deltas).
SET_RULES = {"k % 2": lambda k: k % 2, "(k + k // 16) % 2": lambda k: (k + k // 16) % 2}


def replay_capture(name: str, lifetime: int = CACHED_PAGE_LIFETIME):
    """Replay ram.c's save_xbzrle_page / xbzrle_cache_zero_page over a capture made
    by samples/make_samples.py xbzrle-deltas, with XbzrleCache and our encoder deciding.

    The age (dirty-sync-count) of each record follows from how the capture was
    made: sync 1 at setup, the bulk pass, then one round per sync, each sending
    the set of pages mutated before it (the two sets alternate, so a round ends
    where the set changes); the END section runs at the final count.  XBZRLE
    starts with the first record for a page already sent (ram.c: xbzrle_enabled
    after the first pass).  Returns (mismatches, misses, overflows, hits, rounds).
    """
    sample = next(s for s in load_samples() if s["name"] == name)
    set_of = SET_RULES[sample["test_pages"]["sets"]]
    base = sample["test_pages"]["gpa"]
    final_sync = sample["query_migrate"]["ram"]["dirty-sync-count"]
    ram_addr = {b["name"]: b["offset"] for b in sample["ram_blocks"]}
    cache = XbzrleCache(sample["parameters"]["xbzrle-cache-size"], PS)
    seen: set = set()
    enabled = False
    rounds, current_set = 0, None
    mismatches, misses, overflows, hits = [], 0, 0, 0
    kinds = {int(RamFlag.PAGE), int(RamFlag.ZERO), int(RamFlag.XBZRLE)}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pagecache, "CACHED_PAGE_LIFETIME", lifetime)
        for c in page_changes(name, kinds):
            rec = c.record
            key = (rec.block, rec.addr)
            enabled = enabled or key in seen
            seen.add(key)
            if not enabled:
                continue
            last_stage = c.section_type == SectionType.END
            if not last_stage and set_of((rec.addr - base) // PS) != current_set:
                rounds += 1
                current_set = set_of((rec.addr - base) // PS)
            age = final_sync if last_stage else 1 + rounds
            addr = ram_addr[rec.block] + rec.addr
            kind = rec.flags & ~RamFlag.CONTINUE
            if kind == RamFlag.ZERO:
                cache.insert(addr, bytes(PS), age)
                continue
            if not cache.is_cached(addr, age):
                misses += 1
                if kind != RamFlag.PAGE:
                    mismatches.append(("miss, but not a PAGE record", rec.offset))
                if not last_stage:
                    cache.insert(addr, c.after, age)
                continue
            prev = cache.get(addr)
            delta = xbzrle_encode(prev, c.after, PS)
            if delta is None:
                overflows += 1
                if kind != RamFlag.PAGE:
                    mismatches.append(("overflow, but not a PAGE record", rec.offset))
            else:
                hits += 1
                if kind != RamFlag.XBZRLE or delta != bytes(rec.data):
                    mismatches.append(("hit, but not this XBZRLE record", rec.offset))
            if not last_stage:
                prev[:] = np.frombuffer(c.after, np.uint8)
    return sample, mismatches, misses, overflows, hits, rounds


@pytest.mark.parametrize("name", ["x86-xbzrle-deltas", "x86-xbzrle-aging"])
def test_replaying_a_qemu_capture_through_the_cache_gives_qemu_decisions(name):
    """x86-xbzrle-deltas: 64 MiB cache, no collisions.  x86-xbzrle-aging: 16 slots,
    pages colliding in the same and in adjacent rounds.  Every record is what the
    replay predicts, and the counts equal QEMU's own counters."""
    sample, mismatches, misses, overflows, hits, rounds = replay_capture(name)
    assert mismatches == []
    assert rounds == sample["query_migrate"]["ram"]["dirty-sync-count"] - 3  # the age model holds
    counters = sample["query_migrate"]["xbzrle-cache"]
    assert misses == counters["cache-miss"]
    assert overflows == counters["overflow"]
    assert hits >= 30


@pytest.mark.parametrize("lifetime", [1, 3])
def test_the_aging_capture_tells_the_lifetime(lifetime):
    """The aging capture would not match with a lifetime of 1 or 3 syncs."""
    _, mismatches, *_ = replay_capture("x86-xbzrle-aging", lifetime)
    assert len(mismatches) > 10
