"""The documentation stays true: the limits table matches migstream/wire/limits.py, the
README stays a front door (at most 200 lines, its test command is the one CI runs, its
sample output is what `info` prints), and every relative link points at something."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import migstream.wire.limits as limits

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
sys.path.insert(0, str(ROOT / "docs"))
import limits_table  # noqa: E402 - docs/limits_table.py, not a package module

MARKDOWN = sorted(
    [README, ROOT / "CONTRIBUTING.md", ROOT / "benchmarks" / "README.md", ROOT / "formats" / "README.md"]
    + list((ROOT / "docs").glob("*.md"))
)


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """(info string, body) of every ``` block, in order."""
    return re.findall(r"^```(\w*)\n(.*?)^```", text, flags=re.S | re.M)


def _prose(text: str) -> str:
    """The text without fenced blocks and inline code (links there are examples)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _anchors(path: Path) -> set[str]:
    """GitHub's heading anchors of a Markdown file."""
    found: set[str] = set()
    for heading in re.findall(r"^#+ (.*)$", re.sub(r"^```.*?^```", "", path.read_text(), flags=re.S | re.M), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        candidate, n = slug, 0
        while candidate in found:
            n += 1
            candidate = f"{slug}-{n}"
        found.add(candidate)
    return found


def _doc_limit_rows() -> dict[str, int]:
    """name -> value as docs/limits.md's table states it."""
    rows = {}
    for name, value in re.findall(
        r"^\| `(\w+)` \| (?:`[^`]*` = )?([\d,]+) \|", (ROOT / "docs" / "limits.md").read_text(), re.M
    ):
        assert name not in rows, f"{name} twice in docs/limits.md"
        rows[name] = int(value.replace(",", ""))
    return rows


def test_limits_table_lists_every_constant_of_limits_py_with_its_value():
    constants = {
        name: value
        for name, value in vars(limits).items()
        if name.isupper() and isinstance(value, int) and not isinstance(value, bool)
    }
    assert len(constants) >= 10
    assert _doc_limit_rows() == constants


def test_limits_table_is_the_generated_one():
    doc = (ROOT / "docs" / "limits.md").read_text()
    assert limits_table.table_in_doc(doc) == limits_table.limits_table(limits_table.LIMITS.read_text()), (
        "docs/limits.md is stale: run python docs/limits_table.py --write"
    )


def test_limits_table_takes_the_why_from_the_comments():
    rows = {name: why for name, _, _, why in limits_table.limit_constants(limits_table.LIMITS.read_text())}
    assert rows["MAX_PACKAGE_DEPTH"].startswith("PACKAGED commands inside PACKAGED data.")
    assert rows["MAX_BLOCK_LIST"] == "see `MAX_CONFIG_SUBSECTION`"  # written under its comment
    assert rows["MAX_PAGE_SIZE"] == "see `MIN_TARGET_PAGE_BITS`"


def test_readme_is_at_most_200_lines():
    assert len(README.read_text().splitlines()) <= 200


def test_readme_test_command_is_what_ci_runs():
    blocks = [body.strip() for info, body in _fenced_blocks(README.read_text()) if info == "sh"]
    ci = [line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")]
    assert blocks[1] == ci[-1]


def test_readme_install_command_builds_the_fast_path_and_runs_the_main_job():
    install = [body.strip() for info, body in _fenced_blocks(README.read_text()) if info == "sh"][0]
    assert "gcc" in install.split() and "python3-dev" in install.split()
    assert "samples/x86-xbzrle.mig.zst" in install


def test_readme_sample_output_is_what_info_prints():
    text = README.read_text()
    command = "migstream info samples/x86-xbzrle.mig.zst"
    shown = re.search(r"^```console\n\$ " + re.escape(command) + r"\n(.*?)^```", text, flags=re.S | re.M)
    assert shown, "README.md shows `$ migstream info samples/x86-xbzrle.mig.zst` in a console block"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    real = subprocess.run(
        [sys.executable, "-m", "migstream", *command.split()[1:]],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert shown.group(1) == real


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_existing_files_and_headings(path):
    links = re.findall(r"\]\(([^)\s]+)\)", _prose(path.read_text()))
    for link in links:
        if re.match(r"[a-z]+:", link):
            continue
        target, _, anchor = link.partition("#")
        target_path = (path.parent / target).resolve() if target else path
        assert target_path.exists(), f"{path.name}: {link} does not exist"
        if anchor and target_path.suffix == ".md":
            assert anchor in _anchors(target_path), f"{path.name}: no heading #{anchor} in {target or path.name}"
