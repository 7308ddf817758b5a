"""`python -m tsrevel`: the command line."""

from tsrevel.entrypoints.cli import main

main()
