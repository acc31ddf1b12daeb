"""The CSV reader, fuzzed. Generated tables mix good rows with bad ones whose lines are known:
ragged rows, empty or text cells in number columns, NUL bytes, bytes that are not UTF-8, cells
over the size limit; with blank lines, quoted cells holding commas, quotes and line breaks, a
byte-order mark, CRLF line ends and other encodings around them. With "error" the ConfigError
names the file and the line of the first bad row; with "skip" exactly the bad rows' lines are
listed. Damaged copies of a real table (the wine data) load or fail with a ConfigError naming it."""
import itertools
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from data_loader.data_loaders import CsvDataLoader
from fuzz_helpers import FolderSnapshot, fuzz_settings, mutated
from scripts.make_wine_csv import write_wine_csv
from utils import ConfigError

FIELD_LIMIT = 200
HEADER = ["x", "y", "note", "label"]
NOT_UTF8 = "\ue000"  # written as the byte 0xff
NOTE_TEXT = st.lists(st.sampled_from(list("ab ,;\"'\n\r\té") + ["\r\n"]), min_size=1, max_size=30).map("".join)
BAD_KINDS = ("ragged", "empty number", "text number", "nul", "not utf-8", "huge cell", "empty label")
_files = itertools.count()


@st.composite
def table_row(draw):
    """(cells, is bad) of one data row."""
    kind = draw(st.sampled_from(("good",) * 4 + BAD_KINDS))
    cells = [str(draw(st.floats(-1e6, 1e6, allow_nan=False))), str(draw(st.integers(-50, 50))), draw(NOTE_TEXT),
             draw(st.sampled_from(["0", "1"]))]
    if kind == "ragged":
        cells = cells[:draw(st.integers(1, 3))] if draw(st.booleans()) else cells + ["extra"]
    elif kind == "empty number":
        cells[0] = ""
    elif kind == "text number":
        cells[1] = draw(st.sampled_from(["n/a?", "1,5", "one", "--"]))
    elif kind == "nul":
        cells[2] += "\x00"
    elif kind == "not utf-8":
        cells[2] += NOT_UTF8
    elif kind == "huge cell":
        cells[2] = "z" * draw(st.integers(FIELD_LIMIT + 1, 3 * FIELD_LIMIT))
    elif kind == "empty label":
        cells[3] = ""
    return cells, kind != "good"


@st.composite
def csv_file(draw):
    """(file bytes, lines of the bad rows, whether the whole file is unreadable)."""
    rows = draw(st.lists(table_row(), min_size=0, max_size=12))
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    text, starts = csv_line(HEADER, newline), []
    for cells, _ in rows:
        if draw(st.integers(0, 4)) == 0:
            text += newline  # a blank line: no row at all
        starts.append(len(text))
        text += csv_line(cells, newline)
    bad_lines = [_line_at(text, start) for start, (_, bad) in zip(starts, rows) if bad]
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8-sig", "latin-1", "utf-16"]))
    if encoding == "latin-1":  # every row with a character outside ASCII becomes a row of bad bytes
        bad_lines = sorted(set(bad_lines) | {_line_at(text, start) for start, (cells, _) in zip(starts, rows)
                                             if any(not cell.isascii() for cell in cells)})
        return text.replace(NOT_UTF8, "\xff").encode("latin-1"), bad_lines, False
    return text.encode(encoding).replace(NOT_UTF8.encode(), b"\xff"), bad_lines, encoding == "utf-16"


def csv_line(cells, newline):
    """One CSV record: a cell with a comma, quote, CR or LF quoted (csv.writer leaves a lone CR
    unquoted when the line ends in LF)."""
    quoted = ['"' + cell.replace('"', '""') + '"' if re.search('[,"\r\n]', cell) else cell for cell in cells]
    return ",".join(quoted) + newline


def _line_at(text, offset):
    """The line (from 1) of character `offset`; a line ends at CRLF, CR or LF, as csv reads it."""
    return len(re.findall(r"\r\n|\r|\n", text[:offset])) + 1


@fuzz_settings(60)
@given(case=csv_file(), policy=st.sampled_from(["error", "skip"]), row_limit=st.sampled_from([1000, 1000, 5]))
def test_every_bad_row_is_named_by_its_line(tmp_path, case, policy, row_limit):
    data, bad_lines, unreadable = case
    path = tmp_path / f"case{next(_files)}" / "table.csv"
    path.parent.mkdir()
    path.write_bytes(data)
    snapshot = FolderSnapshot(path.parent)
    try:
        loader = CsvDataLoader(csv_file=str(path), target="label", categorical=["note"], on_bad_sample=policy,
                               max_csv_field_size=FIELD_LIMIT, max_csv_rows=row_limit, batch_size=4)
    except ConfigError as err:
        message = str(err)
        assert f"'{path}'" in message, message
        if not unreadable and row_limit == 1000 and policy == "error" and bad_lines:
            assert f"line {bad_lines[0]}:" in message, (bad_lines, message)
    else:
        assert not unreadable
        skipped = [int(origin.rsplit("line ", 1)[1]) for origin, _ in loader.skipped_samples]
        assert skipped == bad_lines
        assert policy == "skip" or not bad_lines
        assert sum(len(target) for _, target in loader) == len(loader.labels)
    assert snapshot.changes() == []


@pytest.fixture(scope="module")
def wine_bytes(tmp_path_factory):
    folder = tmp_path_factory.mktemp("wine")
    write_wine_csv(folder)
    return (folder / "train.csv").read_bytes()


@fuzz_settings(25)
@given(damage=st.data(), policy=st.sampled_from(["error", "skip"]))
def test_a_damaged_real_table_loads_or_is_named(tmp_path, wine_bytes, damage, policy):
    path = tmp_path / f"case{next(_files)}" / "wine.csv"
    path.parent.mkdir()
    path.write_bytes(damage.draw(mutated(wine_bytes)))
    snapshot = FolderSnapshot(path.parent)
    try:
        loader = CsvDataLoader(csv_file=str(path), target="cultivar", on_bad_sample=policy, batch_size=64)
    except ConfigError as err:
        assert f"'{path}'" in str(err), str(err)
    else:
        assert all(origin.startswith(f"'{path}' line ") for origin, _ in loader.skipped_samples)
        assert sum(len(target) for _, target in loader) == len(loader.labels)
    assert snapshot.changes() == []
