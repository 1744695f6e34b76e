"""``python -m nnequiv``: the command line (:mod:`nnequiv.cli`)."""

from nnequiv.cli import main

main()
