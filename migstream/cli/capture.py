"""``migstream capture`` and ``migstream tap``: record live migrations."""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Annotated

import typer

from ..capture.live import LiveDecoder
from ..capture.live import Throughput
from ..tools.vocabulary import human_size
from ..wire.limits import DEFAULT_MAX_BACKLOG
from .jsonout import print_json
from .root import RECORD
from .root import JsonOpt
from .root import ProgressOpt
from .root import app
from .root import err
from .root import run_command

ListenOpt = Annotated[
    str, typer.Option("--listen", help="Where QEMU migrates to: unix:/path or tcp:HOST:PORT (tcp:PORT = loopback).")
]
OutOpt = Annotated[str, typer.Option("-o", "--output", help="Directory for the channel files and capture.json.")]
BacklogOpt = Annotated[
    int,
    typer.Option(
        "--max-backlog",
        metavar="MIB",
        min=1,
        help="MiB of recorded data allowed to wait for the disk (all channels "
        "together); beyond it the channel that overflows stops being recorded "
        "(a tap keeps forwarding it).",
    ),
]


class _Ticker:
    """The status line on stderr: channels, bytes, throughput [, live decode]."""

    def __init__(self, session, enabled: bool, live: LiveDecoder | None) -> None:
        self.session = session
        self.enabled = enabled or live is not None
        self.live = live
        self.rate = Throughput()
        self._warned = 0
        self._shown = False

    def tick(self) -> None:
        s = self.session
        for w in s.warnings[self._warned :]:
            self._clear()
            err(f"warning: {w}")
        self._warned = len(s.warnings)
        if self.live is not None:
            self.live.poll()
        if not self.enabled:
            return
        total = s.total_bytes()
        rate = self.rate.add(total)
        kinds: dict[str, int] = {}
        for c in s.channels:
            kinds[c.kind or "?"] = kinds.get(c.kind or "?", 0) + 1
        chans = (
            (
                f"{len(s.channels)} channel{'s' if len(s.channels) > 1 else ''} ("
                + ", ".join(f"{n} {k}" for k, n in kinds.items())
                + ")"
            )
            if s.channels
            else "waiting for QEMU"
        )
        line = f"{chans} | {human_size(total)}, {human_size(int(rate))}/s"
        if self.live is not None:
            st = self.live.status()
            recs = " ".join(f"{k} {v}" for k, v in st["records"].items())
            line += f" | iteration {st['ram_iterations']} | {recs}"
            if st["eof"]:
                line += " | EOF"
            if st["error"]:
                line += " | decode stopped"
        sys.stderr.write("\r\033[K" + line)
        sys.stderr.flush()
        self._shown = True

    def _clear(self) -> None:
        if self._shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()

    def done(self) -> None:
        self._clear()


def _serve(session, *, progress: bool | None, live: bool, json_out: bool) -> None:
    enabled = sys.stderr.isatty() if progress is None else progress
    live_dec = None
    if live:

        def main_path():
            ch = session.main_channel()
            return os.path.join(session.directory, ch.file) if ch is not None and ch.file else None

        live_dec = LiveDecoder(main_path)
    ticker = _Ticker(session, enabled, live_dec)
    old_term = signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    interrupted = False
    err(
        f"listening on {session.uri}"
        + (f", forwarding to {session.forward_uri}" if getattr(session, "forward_uri", None) else "")
    )
    session.start()
    try:
        last_manifest = time.monotonic()
        while not session.wait(0.25):
            ticker.tick()
            if time.monotonic() - last_manifest >= 1.0:
                # Keep capture.json's byte counts fresh for readers that follow the capture.
                last_manifest = time.monotonic()
                try:
                    session.write_manifest()
                except OSError as exc:
                    err(f"warning: cannot update capture.json: {exc}")
    except KeyboardInterrupt:
        interrupted = True
    finally:
        signal.signal(signal.SIGTERM, old_term)
        manifest = session.stop()
        ticker.tick()
        ticker.done()
    if live_dec is not None:
        live_dec.poll(final=True)
        st = live_dec.status()
        manifest_live = {k: st[k] for k in ("ram_iterations", "records", "eof", "error")}
        live_dec.close()
    else:
        manifest_live = None
    if json_out:
        doc = dict(manifest)
        if manifest_live is not None:
            doc["live"] = manifest_live
        print_json(doc)
    else:
        _report(manifest, session.directory)
    if manifest_live is not None and manifest_live["error"]:
        err(f"live decoding stopped: {manifest_live['error']} (the recording is unaffected)")
    if interrupted:
        err("interrupted: capture.json says complete: false" if not manifest["complete"] else "interrupted")
        raise typer.Exit(130)
    if any(c.get("error") for c in manifest["channels"]):
        raise typer.Exit(1)


def _report(manifest: dict, directory: str) -> None:
    for c in manifest["channels"]:
        line = f"channel {c['index']}: {c['kind']:<16} {c['file'] or '-':<28} {human_size(c['bytes']):>10}"
        if c.get("return_bytes"):
            line += f"  (return path {human_size(c['return_bytes'])})"
        if c["recording"] != "complete":
            line += f"  RECORDING STOPPED at byte {c['recording_stopped']['offset']}"
        if c.get("resets"):
            line += f"  ({'; '.join(c['resets'])})"
        if c.get("error"):
            line += f"  error: {c['error']}"
        err(line)
    if manifest["ended"] and manifest["started"]:
        err(
            f"{len(manifest['channels'])} channel(s) recorded in {directory} "
            f"(complete: {'yes' if manifest['complete'] else 'no'})"
        )


@app.command(rich_help_panel=RECORD)
def capture(
    listen: ListenOpt,
    output: OutOpt,
    json_out: JsonOpt = False,
    progress: ProgressOpt = None,
    max_backlog: BacklogOpt = DEFAULT_MAX_BACKLOG >> 20,
) -> None:
    """Be a migration destination: record the main and every multifd channel to DIR."""

    def go():
        from ..capture.sessions import CaptureSession

        session = CaptureSession(listen, output, max_backlog=max_backlog << 20)
        _serve(session, progress=progress, live=False, json_out=json_out)

    run_command(go, json_out=json_out)


@app.command(rich_help_panel=RECORD)
def tap(
    listen: ListenOpt,
    forward: Annotated[str, typer.Option("--forward", help="The real destination: unix:/path or tcp:HOST:PORT.")],
    output: OutOpt,
    live: Annotated[
        bool,
        typer.Option(
            "--live", help="Decode the main channel as it arrives: iterations, pages by encoding, throughput."
        ),
    ] = False,
    json_out: JsonOpt = False,
    progress: ProgressOpt = None,
    max_backlog: BacklogOpt = DEFAULT_MAX_BACKLOG >> 20,
) -> None:
    """Sit between source and destination QEMU: forward every channel both ways, record them to DIR."""

    def go():
        from ..capture.sessions import TapSession

        session = TapSession(listen, forward, output, max_backlog=max_backlog << 20)
        _serve(session, progress=progress, live=live, json_out=json_out)

    run_command(go, json_out=json_out)
