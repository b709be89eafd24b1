"""Every error the device package raises on bad input, in one place.

All derive from :class:`TvrecError`, so a caller (the CLI, the simulator) can catch one type and
print ``str(err)``: each message names the thing (file, profile, item) and the reason.
"""


class TvrecError(Exception):
    """Base class of every error tvrec raises on bad input or a damaged file."""


class HistoryError(TvrecError):
    """A watch-history operation was refused; nothing was written."""


class UnknownProfileError(HistoryError):
    """The named profile does not exist on this box."""


class UnknownItemError(HistoryError):
    """The item id is neither in the catalog nor among local items."""


class InvalidEventError(HistoryError):
    """An event's kind, position, duration or timestamp is out of range."""


class DatabaseCorruptError(HistoryError):
    """The SQLite file is not a database, is damaged, or is newer than this code."""


class StorageFullError(HistoryError):
    """The filesystem holding the history database is full (or failed a write): this write was
    rolled back, every event committed before it is kept, the database still reads, and writes
    succeed again once space returns."""


class MediaError(TvrecError):
    """A media file is missing, unreadable, corrupt or lacks what we need."""


class BundleError(TvrecError):
    """A device bundle is missing, incomplete, tampered with or incompatible."""


class DataFormatError(TvrecError):
    """An input data file (ratings, logs, catalog) is malformed; the message names the line."""


class RuntimeMissingError(TvrecError, RuntimeError):
    """No TFLite interpreter is installed (neither ``ai-edge-litert`` nor ``tflite-runtime``)."""
