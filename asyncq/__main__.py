"""``python -m asyncq`` runs the ``asyncq`` command line."""

from asyncq.cli import main

main()
