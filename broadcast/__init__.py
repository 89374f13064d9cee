"""broadcast: one crisis notice, every channel, each contact in their own language."""

__version__ = "0.1.0"
