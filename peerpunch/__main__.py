"""``python -m peerpunch`` runs the chat peer."""

import sys

from .peer import main

sys.exit(main(prog="python -m peerpunch"))
