"""What ships to the TV box: watch history, item-based CF, the int8 content model, ranking.

This package depends only on numpy, sqlite-utils, a LiteRT interpreter (``ai-edge-litert``
or ``tflite-runtime``) and PyNaCl (bundle signatures, at install). It never imports TensorFlow, PySide6, ``models``, ``export`` or
``simulator`` -- a test enforces it.
"""

from device.errors import (  # noqa: F401  (re-exported: the public error types)
    BundleError,
    DatabaseCorruptError,
    DataFormatError,
    HistoryError,
    InvalidEventError,
    MediaError,
    StorageFullError,
    TvrecError,
    UnknownItemError,
    UnknownProfileError,
)
