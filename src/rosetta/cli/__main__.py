"""``python -m rosetta.cli …`` runs the ``rosetta`` command."""

from rosetta.cli import main

main()
