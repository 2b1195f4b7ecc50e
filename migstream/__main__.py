"""`python -m migstream`: the `migstream` command."""

from migstream.cli import main

main()
