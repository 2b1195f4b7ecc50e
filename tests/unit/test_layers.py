"""No module of migstream uses another module's private names.

The rule, checked with ``ast`` over migstream/**/*.py: a name with one leading
underscore (``_helper``; dunders such as ``__version__`` are public) belongs to the
module that defines it.  Another module may not take it, whether by
``from .mod import _helper``, ``import pkg._mod``, or ``mod._helper`` on a module it
imported.  A helper that two modules need is public and lives in the lowest layer
that needs it.

The one exception is a private *module*: its underscore means "private to its
package", so modules of the same package may import it (``from . import _runscan``
in migstream/wire/fastpath.py); a module of any other package may not.  Private
names of other libraries count the same: they are not their API either.
"""

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

from support.samples import ROOT

PACKAGE = ROOT / "migstream"


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def is_first_party_module(dotted: str) -> bool:
    """``migstream.wire._runscan`` is a module (source, stub or package) of this checkout."""
    parts = dotted.split(".")
    if parts[0] != "migstream":
        return False
    path = ROOT.joinpath(*parts)
    return path.with_suffix(".py").is_file() or path.with_suffix(".pyi").is_file() or (path / "__init__.py").is_file()


def private_uses(
    module: str, is_package: bool, tree: ast.Module, is_module: Callable[[str], bool] = is_first_party_module
) -> list[str]:
    """Where ``module`` (its source parsed as ``tree``) takes a private name of another
    module: ``"line N: what"`` for each, in line order."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []
    bound_modules = set()  # local names of the first-party modules it imported

    def outside_private_module(dotted: str) -> bool:
        """``dotted`` passes through a private module of a package other than ours."""
        parts = dotted.split(".")
        return any(is_private(part) and ".".join(parts[:i]) != package for i, part in enumerate(parts))

    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            if outside_private_module(base):
                found.append((node.lineno, f"from {base} import ..."))
                continue
            for alias in node.names:
                dotted = f"{base}.{alias.name}"
                if is_module(dotted):
                    bound_modules.add(alias.asname or alias.name)
                    if outside_private_module(dotted):
                        found.append((node.lineno, f"from {base} import {alias.name} (a private module)"))
                elif is_private(alias.name):
                    found.append((node.lineno, f"from {base} import {alias.name}"))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if outside_private_module(alias.name):
                    found.append((node.lineno, f"import {alias.name}"))
                elif alias.asname and is_module(alias.name):
                    bound_modules.add(alias.asname)
        elif isinstance(node, ast.Attribute) and is_private(node.attr):
            if isinstance(node.value, ast.Name) and node.value.id in bound_modules:
                found.append((node.lineno, f"{node.value.id}.{node.attr}"))
    return [f"line {line}: {what}" for line, what in sorted(found)]


def module_name(path: Path) -> tuple[str, bool]:
    """(dotted module name, is a package) of a file under migstream/."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def test_no_module_uses_another_modules_private_names():
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module, is_package = module_name(path)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        offences += [f"{path.relative_to(ROOT)} {use}" for use in private_uses(module, is_package, tree)]
    assert not offences, "private names used outside their module:\n" + "\n".join(offences)


# The rule on made-up modules, so that the scan above is known to find what it
# looks for.  Modules that "exist" for these cases:
EXISTING = {"migstream.wire._runscan", "migstream.wire.grammar", "migstream.encode.encoder", "migstream.cli"}


@pytest.mark.parametrize(
    ("module", "source"),
    [
        ("migstream.encode.mappedram_writer", "from .encoder import RamStats, _target_page_bits_for"),
        ("migstream.encode.mappedram_writer", "from migstream.encode.encoder import _target_page_bits_for as bits"),
        ("migstream.cli.encode", "from .. import cli\ncli._Progress()"),
        ("migstream.cli.encode", "import migstream.cli as c\nc._Progress()"),
        ("migstream.decode.decoder", "from ..wire import _runscan"),
        ("migstream.decode.decoder", "from migstream.wire._runscan import walk"),
        ("migstream.decode.decoder", "import migstream.wire._runscan"),
        ("migstream.tools.index", "from typing import _SpecialForm"),
    ],
)
def test_private_use_found(module, source):
    assert private_uses(module, False, ast.parse(source), EXISTING.__contains__)


@pytest.mark.parametrize(
    ("module", "is_package", "source"),
    [
        # A private module of its own package.
        ("migstream.wire.fastpath", False, "from . import _runscan\n_runscan.walk"),
        ("migstream.wire.fastpath", False, "from migstream.wire import _runscan"),
        ("migstream.wire", True, "from . import _runscan"),
        # Dunders are public; private attributes of objects are not imports.
        ("migstream.cli.root", False, "from migstream import __version__\nfrom . import grammar\nself._x\nobj._y"),
        ("migstream.tools.index", False, "from ..wire import grammar as g\ng.RamFlag"),
    ],
)
def test_allowed_use_not_found(module, is_package, source):
    assert private_uses(module, is_package, ast.parse(source), EXISTING.__contains__) == []
