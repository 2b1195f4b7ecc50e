"""The three parsers of tests/unit/test_kaitai.py on every sample: the Kaitai parser
generated from formats/qemu_migration.ksy, plain construct parsing
(tests/support/reference.py) and the decoder; plus the decoder fed in small chunks
(the sans-IO path that once was quadratic for large elements).

    python3 benchmarks/bench_parsers.py [--repeat 3]

Prints, per sample, the best wall time of each and the records per second.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from benchlib import best_time  # noqa: E402
from kaitaistruct import BytesIO  # noqa: E402
from kaitaistruct import KaitaiStream  # noqa: E402

from migstream.decode.decoder import StreamDecoder  # noqa: E402
from migstream.events import NEED_DATA  # noqa: E402
from support.reference import reference_records  # noqa: E402
from support.samples import load_samples  # noqa: E402
from support.samples import raw_stream  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "formats"))
from qemu_migration import QemuMigration  # noqa: E402


def decode(data, chunk=None):
    dec = StreamDecoder()
    for i in range(0, len(data), chunk or len(data)):
        dec.feed(memoryview(data)[i : i + (chunk or len(data))])
        while (ev := dec.next_event()) is not NEED_DATA and ev is not None:
            pass
    dec.feed(b"")
    while dec.next_event() is not None:
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(
        f"{'sample':16} {'MiB':>6} {'records':>8} {'kaitai s':>9} {'construct s':>11} "
        f"{'decoder s':>9} {'decoder 4KiB feeds s':>20}"
    )
    for s in load_samples():
        data = raw_stream(s)
        n = sum(1 for r in reference_records(data) if not isinstance(r[0], str))
        k = best_time(lambda data=data: QemuMigration(4096, False, False, KaitaiStream(BytesIO(data))), args.repeat)
        c = best_time(lambda data=data: reference_records(data), args.repeat)
        d = best_time(lambda data=data: decode(data), args.repeat)
        d4 = best_time(lambda data=data: decode(data, 4096), args.repeat)
        print(f"{s['name']:16} {len(data) / 2**20:6.1f} {n:8} {k:9.3f} {c:11.3f} {d:9.3f} {d4:20.3f}")


if __name__ == "__main__":
    main()
