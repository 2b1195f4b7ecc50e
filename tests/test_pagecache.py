"""XbzrleCache follows migration/page_cache.c (QEMU 7.2): direct-mapped slots by
global RAM address, hits refresh the age, a fresh page of another address is not
evicted for CACHED_PAGE_LIFETIME (2) syncs."""

import numpy as np
import pytest

from migstream.errors import UsageError
from migstream.pagecache import CACHED_PAGE_LIFETIME, XbzrleCache

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
