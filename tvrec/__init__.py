"""tvrec: on-device recommendations for smart-TV boxes.

The importable packages are ``device`` (what ships to the box), ``models`` and ``export`` (fleet
side, TensorFlow) and ``simulator`` (the PySide6 home-screen simulator). This package holds only
the version and the command-line entry point, so that ``tvrec --help`` never imports a heavy
dependency.
"""

__version__ = "0.1.0"
