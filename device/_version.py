"""The tvrec version (one place: ``tvrec.__version__`` and the device wheel read it here)."""

__version__ = "0.1.0"
