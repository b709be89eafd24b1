"""tvrec: on-device recommendations for smart-TV boxes.

The importable packages are ``device`` (what ships to the box), ``models`` and ``export`` (fleet
side, TensorFlow) and ``simulator`` (the PySide6 home-screen simulator). This package holds only
the version and the command-line entry point, so that ``tvrec --help`` never imports a heavy
dependency.
"""

# One place for the version: the device package, which ships alone to the box (its wheel and
# the bundles it writes carry the same number).
from device._version import __version__  # noqa: E402,F401
