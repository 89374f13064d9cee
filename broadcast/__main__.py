"""Run the command line as ``python -m broadcast``."""

from broadcast.cli import run

run()
