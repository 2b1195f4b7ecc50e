"""``python -m migstream.cli``: the ``migstream`` command."""

from . import main

main()
