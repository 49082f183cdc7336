"""``python -m skr`` runs the command line."""

from skr.entrypoints.cli import main

main()
