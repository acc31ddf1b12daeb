"""The limits every reader of users' data files keeps (declared with their defaults in
config/schema.py, set in data_loader.args): image pixels, CSV rows and cell size, and the time a
file may deliver no data before it is given up on."""
from dataclasses import dataclass, fields

from config.schema import (
    DEFAULT_MAX_CSV_FIELD_SIZE,
    DEFAULT_MAX_CSV_ROWS,
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_READ_TIMEOUT_S,
)


@dataclass(frozen=True)
class FileLimits:
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    read_timeout_s: float | None = DEFAULT_READ_TIMEOUT_S
    max_csv_rows: int = DEFAULT_MAX_CSV_ROWS
    max_csv_field_size: int = DEFAULT_MAX_CSV_FIELD_SIZE

    @classmethod
    def of_args(cls, args):
        """The limits set in a data_loader.args dict (e.g. a checkpoint's), defaults for the rest."""
        return cls(**{f.name: args[f.name] for f in fields(cls) if f.name in args})


DEFAULT_LIMITS = FileLimits()
