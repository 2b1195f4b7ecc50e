"""What ``info`` shows of a packet capture (containers/pcap): the file and its migrations."""

from __future__ import annotations

from ..tools.vocabulary import human_size
from .jsonout import print_json


def capture_lines(d: dict) -> list[str]:
    """Lines for ``PacketCapture.describe()``; ``selected`` marks the decoded migration."""
    links = ", ".join(d["link_types"])
    out = [
        f"packet capture   {d['format']}{' (nanosecond)' if d['nanosecond'] else ''}, {links}, "
        f"{d['packets']} packets, {d['tcp_connections']} TCP connections, {len(d['migrations'])} migrations"
    ]
    for m in d["migrations"]:
        mark = "*" if m["number"] == d.get("selected") else " "
        out.append(
            f" {mark}migration {m['number']}   {m['source']} -> {m['destination']}  main {human_size(m['main_bytes'])}"
            f", return path {human_size(m['return_path_bytes'])}{'' if m['complete'] else '  INCOMPLETE'}"
        )
        for c in m["multifd_channels"]:
            out.append(f"    multifd {c['id']}    {c['source']}  {human_size(c['bytes'])}")
        for c in m["postcopy_preempt"]:
            out.append(f"    postcopy-preempt  {c['source']}  {human_size(c['bytes'])}")
    if d["fault"]:
        out.append(f"capture fault    {d['fault']}")
    return out


def print_capture(d: dict, json_out: bool) -> None:
    """A capture holding several migrations, none chosen: the list, and how to pick."""
    if json_out:
        print_json({"capture": d})
        return
    print("\n".join(capture_lines(d)))
    print(f"pick one with {d['file']}#N")
