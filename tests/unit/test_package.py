"""The package as people install it: a wheel built from a clean copy of the checkout
(the files git knows, no .venv, no build output, no compiled extension in place)
installs into a fresh venv and runs ``migstream info`` on a sample.

The fresh venv gets the wheel with ``--no-deps``; its dependencies come from the
environment running the tests (a path entry, after the venv's own site-packages, so
the wheel's migstream is the one imported), which keeps the test off the network
and within seconds; ``pip check`` then holds the wheel's declared dependency ranges
against those installed versions."""

import email
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import migstream
from support.samples import ROOT
from support.samples import SAMPLES


def clean_copy(dest: Path) -> Path:
    """The checkout's files as git lists them (tracked, and new files not ignored)."""
    files = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in filter(None, files):
        src = ROOT / name.decode()
        if src.is_file() and not src.name.endswith(".so"):
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())
    return dest


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    if not (ROOT / ".git").exists():
        pytest.fail("needs a git checkout (the sdist leaves the tests out)")
    work = tmp_path_factory.mktemp("wheel")
    src = clean_copy(work / "src")
    r = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(work / "dist"), str(src)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr
    (whl,) = (work / "dist").glob("migstream-*.whl")
    return whl


def test_wheel_contents(wheel):
    assert wheel.name.startswith(f"migstream-{migstream.__version__}-")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = email.message_from_bytes(z.read(f"migstream-{migstream.__version__}.dist-info/METADATA"))
        tags = email.message_from_bytes(z.read(f"migstream-{migstream.__version__}.dist-info/WHEEL"))
    assert {"migstream/py.typed", "migstream/tui/app.tcss", "migstream/wire/_runscan.pyi"} <= names
    # The compiled walk, for the limited API of 3.11: one wheel for every CPython >= 3.11.
    assert "migstream/wire/_runscan.abi3.so" in names
    assert all(t.startswith("cp311-abi3-") for t in tags.get_all("Tag")), tags.get_all("Tag")
    assert meta["License-Expression"] == "MIT"
    assert set(meta.get_all("License-File")) == {"LICENSE", "NOTICE"}
    assert "Typing :: Typed" in meta.get_all("Classifier")
    assert meta["Version"] == migstream.__version__
    assert not any(n.startswith(("tests/", "samples/", "benchmarks/")) for n in names)


def test_wheel_installs_and_runs_info(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    r = subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", str(wheel)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    # The dependencies: this environment's site-packages, after the venv's own.
    purelib = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], capture_output=True, text=True
    ).stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], *site.getsitepackages()}
    Path(purelib, "deps-of-the-test.pth").write_text("\n".join(sorted(ours)) + "\n")
    r = subprocess.run([py, "-m", "pip", "check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    where = subprocess.run(
        [py, "-c", "import migstream; print(migstream.__file__)"], capture_output=True, text=True, cwd=tmp_path
    )
    assert where.stdout.startswith(str(venv)), where.stdout + where.stderr
    r = subprocess.run(
        [venv / "bin" / "migstream", "info", SAMPLES / "x86-xbzrle.mig.zst"], capture_output=True, text=True
    )
    assert r.returncode == 0, r.stderr
    assert "machine          pc-i440fx-7.2" in r.stdout and "RAM complete     yes" in r.stdout
    r = subprocess.run([venv / "bin" / "migstream", "--version"], capture_output=True, text=True)
    assert r.stdout.splitlines()[:2] == [
        f"migstream {migstream.__version__}",
        "record walk  compiled (migstream/wire/_runscan.c)",
    ]
