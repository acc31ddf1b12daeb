"""The one reader of users' CSV files. Each record of the file is one row of the frame, and the
line it starts on is kept, so every problem names the true line even after blank lines or quoted
line breaks. A record that cannot be a row (more or fewer cells than the header, a cell over
the size limit, bytes that are not UTF-8 text, a NUL byte) becomes an empty row with a problem:
a bad row that on_bad_sample "skip" leaves out. A file that cannot be a table at all (unreadable,
no header, more rows than the limit) is a ConfigError naming it."""
import csv
import io
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from utils import ConfigError
from utils.bounded_read import ReadProblem, read_bounded

from .file_limits import DEFAULT_LIMITS

_NOT_TEXT = re.compile("[\x00\udc80-\udcff]")  # a NUL, or a byte that is not UTF-8 (surrogateescape)


@dataclass
class CsvTable:
    """`frame`: one row per data record (bad records as empty rows); `lines[i]`: the file line row
    i starts on; `troubles`: {row position: what is wrong with that record}."""
    path: Path
    frame: pd.DataFrame
    lines: np.ndarray
    troubles: dict = field(default_factory=dict)
    limits: object = DEFAULT_LIMITS
    _written: list = field(default_factory=list, repr=False)

    def written_cell(self, column, position):
        """The cell as the file holds it (where the frame has a missing value: empty, or a marker
        such as 'n/a'); the file is read again the first time this is asked."""
        if not self._written:
            header, records = _records(read_bounded(self.path, None, self.limits.read_timeout_s)
                                       .decode("utf-8-sig", errors="surrogateescape"), self.path, "", self.limits)
            self._written.append((header, [cells for _, cells, _ in records]))
        header, rows = self._written[0]
        cells = rows[position] if position < len(rows) else []
        index = header.index(column) if column in header else len(cells)
        return cells[index] if index < len(cells) else ""

    @property
    def problems(self):
        """{row position: "'path' line N: what is wrong"}."""
        return {position: f"'{self.path}' line {self.lines[position]}: {trouble}"
                for position, trouble in self.troubles.items()}


def read_table(path, key, limits=DEFAULT_LIMITS):
    """The CSV file at `path` (named by config `key`) as a CsvTable, within `limits`."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{key} '{path}' does not exist. Point it at a CSV file with a header row.")
    try:
        data = read_bounded(path, None, limits.read_timeout_s)
    except ReadProblem as err:
        raise ConfigError(f"{key} '{path}' {err}. Point it at a CSV file with a header row.") from None
    text = data.decode("utf-8-sig", errors="surrogateescape")  # a leading byte-order mark is not data
    header, records = _records(text, path, key, limits)
    lines, width, cells, troubles = [], len(header), [], {}
    for position, (line, record, trouble) in enumerate(records):
        lines.append(line)
        trouble = trouble or _record_problem(record, width)
        if trouble:
            troubles[position] = trouble
            record = [""] * width
        cells.append(record)
    return CsvTable(path, _frame(header, cells), np.asarray(lines, dtype=np.int64), troubles, limits)


def _records(text, path, key, limits):
    """(header cells, [(line, cells, problem or None)]) of the file's records; blank lines are
    not records (as in pandas)."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header, records, line = None, [], 1
    with _field_size_limit(limits.max_csv_field_size):
        while True:
            start = line
            try:
                cells, trouble = next(reader), None
            except StopIteration:
                break
            except csv.Error as err:
                cells, trouble = [], _csv_problem(err, limits)
            line = reader.line_num + 1
            if not cells and trouble is None:
                continue
            if header is None:
                header = _header(cells, trouble, path, key)
                continue
            if len(records) >= limits.max_csv_rows:
                raise ConfigError(f"{key} '{path}' has more than {limits.max_csv_rows:,} data rows, the limit "
                                  "data_loader.args.max_csv_rows. Raise it if the table is meant to be this long.")
            records.append((start, cells, trouble))
    if header is None:
        raise ConfigError(f"{key} '{path}' is empty. It needs a header row naming the columns, then one row "
                          "per sample.")
    return header, records


def _header(cells, trouble, path, key):
    trouble = trouble or _text_problem(cells)
    if trouble:
        raise ConfigError(f"{key} '{path}': its header row cannot be read: {trouble}. Save the file as UTF-8 CSV "
                          "text with a header row.")
    repeated = sorted({name for name in cells if name and cells.count(name) > 1})
    if repeated:  # pandas would read the second as 'name.1', and the config could not tell them apart
        where = "; ".join(f"'{name}' in columns {', '.join(str(i + 1) for i, c in enumerate(cells) if c == name)}"
                          for name in repeated)
        raise ConfigError(f"{key} '{path}': its header row names more than one column the same: {where}. "
                          "Give each column its own name in the file's first row.")
    return cells


def _record_problem(cells, width):
    if len(cells) != width:
        return f"it has {len(cells)} cell(s), the header has {width} (a stray or missing comma or quote?)"
    return _text_problem(cells)


def _text_problem(cells):
    for index, cell in enumerate(cells):
        found = _NOT_TEXT.search(cell)
        if found:
            what = "a NUL byte" if found.group() == "\x00" else \
                f"the byte 0x{ord(found.group()) - 0xdc00:02x}, which is not UTF-8 text"
            return f"cell {index + 1} holds {what} (save the file as UTF-8 text)"
    return None


def _csv_problem(err, limits):
    if "field larger than field limit" in str(err):
        return (f"a cell is longer than {limits.max_csv_field_size:,} characters "
                "(data_loader.args.max_csv_field_size)")
    return f"it cannot be parsed as CSV ({err})"


@contextmanager
def _field_size_limit(size):
    """The csv module's cell limit is global: set it for this read only."""
    saved = csv.field_size_limit()
    csv.field_size_limit(size)
    try:
        yield
    finally:
        csv.field_size_limit(saved)


def _frame(header, cells):
    """The records as pandas would have read them (its column names, missing values and types):
    written out as clean CSV and read back."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")  # a cell holding a lone CR or LF is then quoted
    writer.writerow(header)
    writer.writerows(cells)
    buffer.seek(0)
    frame = pd.read_csv(buffer, skip_blank_lines=False)
    if len(frame) != len(cells):
        raise AssertionError(f"CSV reader: {len(cells)} records became {len(frame)} rows")
    return frame
