"""``python -m molks.cli`` (what ``torchrun -m molks.cli train ...`` runs)."""

from molks.cli import app

app()
