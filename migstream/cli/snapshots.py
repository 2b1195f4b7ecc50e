"""``migstream snapshots IMAGE``: the internal snapshots of a qcow2 image and the exact
size of each one's VM state (what ``--snapshot`` / ``IMAGE@SNAPSHOT`` choose from)."""

from __future__ import annotations

import os
from typing import Annotated

import typer

from ..containers.qcow2 import Qcow2Image
from ..containers.qcow2 import is_qcow2
from ..errors import UsageError
from ..tools.vocabulary import human_size
from .jsonout import print_json
from .root import INSPECT
from .root import JsonOpt
from .root import app
from .root import run_command


@app.command(rich_help_panel=INSPECT)
def snapshots(
    image: Annotated[str, typer.Argument(metavar="IMAGE", help="A qcow2 disk image.")], json_out: JsonOpt = False
) -> None:
    """List a qcow2 image's internal snapshots: id, name, date, VM clock, icount, disk size, VM state size."""

    def go():
        try:
            f = open(image, "rb")
        except OSError as exc:
            raise UsageError(f"cannot open {image}: {exc.strerror}") from exc
        with f:
            if not is_qcow2(os.pread(f.fileno(), 4, 0)):
                raise UsageError(f"{image}: not a qcow2 image")
            img = Qcow2Image(f.fileno(), image)
        if json_out:
            doc = {
                "image": image,
                "version": img.version,
                "cluster_size": img.cluster_size,
                "disk_size": img.size,
                "extended_l2": img.extended_l2,
                "snapshots": [s.as_dict() | {"vm_state_offset": img.vm_state_offset(s)} for s in img.snapshots],
            }
            print_json(doc)
            return
        if not img.snapshots:
            print("no snapshots")
            return
        print(f"{'ID':<4} {'TAG':<20} {'DATE':<19} {'VM CLOCK':>16} {'ICOUNT':>10} {'DISK':>10} {'VM STATE':>12}")
        for s in img.snapshots:
            icount = "" if s.icount is None else str(s.icount)
            print(
                f"{s.id:<4} {s.name:<20} {s.date:<19} {s.vm_clock:>16} {icount:>10} {human_size(s.disk_size):>10} "
                f"{s.vm_state_size:>12}"
            )

    run_command(go, json_out=json_out)
