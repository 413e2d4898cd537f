"""``python -m sqsq`` runs the command line."""

from .cli import main

main()
