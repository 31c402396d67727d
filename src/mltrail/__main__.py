"""``python -m mltrail`` runs the CLI."""

from mltrail.cli.main import main

main()
