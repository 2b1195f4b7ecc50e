"""The XBZRLE page cache of the sending side (migration/page_cache.c, QEMU 7.2).

A direct-mapped cache: slot = (ram_addr / page_size) & (slots - 1), one page per
slot, where ram_addr is the page's *global* RAM address (block offset in the
ram_addr_t space + offset inside the block).  Each slot remembers the address it
holds and an age (ram.c passes the dirty-sync count).  A slot holding a different
page is only taken over once that page has gone CACHED_PAGE_LIFETIME syncs
without being looked up.  The destination keeps no cache; this only decides
which pages the sender can XBZRLE-encode and against what.

All pages live in one preallocated numpy array (``np.zeros``: the kernel maps
untouched pages lazily, much like QEMU's allocate-on-first-insert); per slot only
the address and age are kept, in two numpy arrays.
"""

from __future__ import annotations

import numpy as np

from ..errors import UsageError

# page_cache.c: "the page in cache will not be replaced in two cycles"
CACHED_PAGE_LIFETIME = 2

_NO_PAGE = -1  # it_addr of an empty slot ((uint64_t)-1 in QEMU)


class XbzrleCache:
    """``XbzrleCache(cache_bytes, page_size)``: what ``cache_init`` builds.

    QEMU 7.2 takes only a power-of-two cache size no smaller than a page
    (migrate-set-parameters: "a power of two no less than the target page size";
    cache_init: "number of pages is not a power of two"), so the number of slots
    is cache_bytes / page_size exactly; anything else is refused the same way.
    """

    def __init__(self, cache_bytes: int, page_size: int) -> None:
        if page_size <= 0 or page_size & (page_size - 1):
            raise UsageError(f"page size {page_size} is not a power of two")
        if cache_bytes < page_size:
            raise UsageError(f"XBZRLE cache size {cache_bytes} is smaller than the target page size {page_size}")
        if cache_bytes & (cache_bytes - 1):
            raise UsageError(
                f"XBZRLE cache size {cache_bytes} is not a power of two "
                "(QEMU: a power of two no less than the target page size)"
            )
        self.page_size = page_size
        self.slots = cache_bytes // page_size  # max_num_items
        self._page_shift = page_size.bit_length() - 1
        self._mask = self.slots - 1
        self.pages = np.zeros((self.slots, page_size), dtype=np.uint8)
        self.addrs = np.full(self.slots, _NO_PAGE, dtype=np.int64)  # it_addr
        self.ages = np.zeros(self.slots, dtype=np.int64)  # it_age
        self.num_items = 0  # slots that ever held a page

    def slot(self, addr: int) -> int:
        """cache_get_cache_pos."""
        return (addr >> self._page_shift) & self._mask

    def is_cached(self, addr: int, age: int) -> bool:
        """cache_is_cached: a hit also refreshes the slot's age."""
        i = (addr >> self._page_shift) & self._mask
        if self.addrs[i] == addr:
            self.ages[i] = age
            return True
        return False

    def get(self, addr: int) -> np.ndarray | None:
        """get_cached_data: the slot's page as a writable view (whatever page the
        slot holds, as in QEMU; None while the slot never held one)."""
        i = (addr >> self._page_shift) & self._mask
        if self.addrs[i] == _NO_PAGE:
            return None
        return self.pages[i]

    def insert(self, addr: int, data, age: int) -> bool:
        """cache_insert: False (QEMU's -1) when the slot holds another page that is
        still fresh, i.e. its age + CACHED_PAGE_LIFETIME > age; else copy the page
        in, take the age and the address, True."""
        i = (addr >> self._page_shift) & self._mask
        held = int(self.addrs[i])
        if held != _NO_PAGE and held != addr and int(self.ages[i]) + CACHED_PAGE_LIFETIME > age:
            return False
        if held == _NO_PAGE:
            self.num_items += 1
        page = data if isinstance(data, np.ndarray) else np.frombuffer(data, dtype=np.uint8)
        self.pages[i] = page.reshape(-1).view(np.uint8)
        self.ages[i] = age
        self.addrs[i] = addr
        return True

    def __contains__(self, addr: int) -> bool:
        """Whether the page is cached, without touching its age."""
        return bool(self.addrs[(addr >> self._page_shift) & self._mask] == addr)
