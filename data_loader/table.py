"""CSV tables: feature columns and one or more target columns. Numeric columns are filled (when
`missing_values` is "fill") and standardised, categorical columns one-hot encoded. What is fitted
on the training rows is kept as plain data (`preprocessing`), recorded in the run's config, and
`apply_table_preprocessing(frame, preprocessing)` turns any DataFrame with those columns into the
model's input, e.g. new rows to predict."""
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from utils import ConfigError

from .csv_reader import read_table
from .file_limits import DEFAULT_LIMITS
from .task import CLASS_TASKS, infer_table_task

MISSING_POLICIES = ("error", "fill")
logger = logging.getLogger("data_loader")


def read_csv(path, key, limits=DEFAULT_LIMITS):
    """The table at `path` (named by config `key`) when every row is usable, its index the file line
    each row starts on; a bad row is a ConfigError that names the lines."""
    table = read_table(path, key, limits)
    if table.problems:
        first = [table.problems[p] for p in sorted(table.problems)[:3]]
        raise ConfigError(f"{len(table.problems)} bad row(s): {'; '.join(first)}"
                          f"{' ...' if len(table.problems) > 3 else ''}. Fix or remove them.")
    return table.frame.set_axis(table.lines, axis=0)


def check_columns(frame, path, targets, features):
    """A clear error for a target or feature column that the file lacks."""
    for name, key in [*[(t, "target") for t in targets], *[(f, "features") for f in features or []]]:
        if name not in frame.columns:
            spaced = [c for c in frame.columns if str(c).strip() == str(name).strip()]
            fix = (f"{str(spaced[0])!r} has spaces around its name (a space after each comma of the header?): "
                   "remove them from the file's first row, or write the name as the file has it."
                   if spaced else "Fix the column name in the config.")
            raise ConfigError(f"'{path}' has no column '{name}' (data_loader.args.{key}). Its columns are: "
                              f"{', '.join(repr(str(c)) for c in frame.columns)}. {fix}")


def target_columns(target):
    """data_loader.args.target as a list of column names (one name or a list of them)."""
    columns = [target] if isinstance(target, str) else list(target or [])
    if not columns or not all(isinstance(c, str) for c in columns):
        raise ConfigError(f"data_loader.args.target is {target!r}; write one column name (\"price\") or a list "
                          "of them ([\"height\", \"weight\"]).")
    return columns


def feature_columns(frame, targets, features, exclude=()):
    return list(features) if features else [c for c in frame.columns if c not in targets and c not in exclude]


def guess_categorical(frame, columns):
    """Columns whose values are mostly not numbers (one stray text value keeps a column numeric)."""
    categorical = []
    for column in columns:
        values = frame[column].dropna()
        numeric = pd.to_numeric(values, errors="coerce").notna().mean() if len(values) else 1.0
        if numeric < 0.5:
            categorical.append(column)
    return categorical


def missing_value_problem(column, raw_text, hint=True):
    """What to say about an empty cell, or one that pandas reads as missing ('n/a', 'NA', ...);
    `hint`: how to train with such cells."""
    shown = "empty" if not raw_text.strip() else f"{raw_text!r}, a missing-value marker"
    fix = (" (set data_loader.args.missing_values to \"fill\" to fill it with the training median or most "
           "frequent value)") if hint else ""
    return f"column '{column}' is {shown}{fix}"


def row_problems(table, targets, features, categorical, missing_values, numeric_targets=False):
    """{row position: message naming the file, line and column} for the rows of `table` (a
    CsvTable) that cannot be used. `numeric_targets`: the targets must be numbers (regression,
    multi-label)."""
    frame, path, lines = table.frame, table.path, table.lines
    problems = {}

    def note_not_numbers(column, what):
        values = frame[column]
        not_number = pd.to_numeric(values, errors="coerce").isna() & values.notna()
        for position in np.flatnonzero(not_number.to_numpy()):
            problems.setdefault(int(position), f"'{path}' line {lines[position]}: {what} '{column}' is "
                                               f"{values.iloc[position]!r}, not a number")

    for target in targets:
        for position in np.flatnonzero(frame[target].isna().to_numpy()):
            shown = missing_value_problem(target, table.written_cell(target, position), hint=False)
            problems.setdefault(int(position), f"'{path}' line {lines[position]}: the target {shown}")
        if numeric_targets:
            note_not_numbers(target, "the target column")
    for column in features:
        if missing_values == "error":
            for position in np.flatnonzero(frame[column].isna().to_numpy()):
                shown = missing_value_problem(column, table.written_cell(column, position))
                problems.setdefault(int(position), f"'{path}' line {lines[position]}: {shown}")
        if column not in categorical:
            note_not_numbers(column, "column")
    return problems


def class_names_of(values):
    """Sorted distinct target values as strings (numerically when they are all numbers)."""
    distinct = pd.unique(values.dropna())
    numeric = pd.to_numeric(pd.Series(distinct), errors="coerce")
    if numeric.notna().all():
        order = np.argsort(numeric.to_numpy(), kind="stable")
        return [_label_text(distinct[i]) for i in order]
    return sorted(_label_text(v) for v in distinct)


def _label_text(value):
    """1.0 and 1 name the same class "1"."""
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def label_indices(values, class_names, path, key, lines):
    """Class index of each target value (rows starting on file `lines`); a value the training
    data lacks is an error naming the lines."""
    texts = values.map(_label_text)
    index = {name: i for i, name in enumerate(class_names)}
    unknown = ~texts.isin(index)
    if unknown.any():
        rows = np.flatnonzero(unknown.to_numpy())
        shown = ", ".join(f"line {lines[r]} ({texts.iloc[r]!r})" for r in rows[:5])
        raise ConfigError(f"{key} '{path}' has target values the training data lacks: {shown}"
                          f"{' ...' if len(rows) > 5 else ''}. The model cannot predict a class it never "
                          f"saw (training classes: {', '.join(class_names)}). Add training rows of it or "
                          "remove these rows.")
    return texts.map(index).to_numpy(dtype=np.int64)


def table_task(task, targets, training_values, class_names=None):
    """(task kind, names) of the target columns: class names (sorted target values, or the given
    ones of the training data), the label columns, or the target columns."""
    kind = infer_table_task(task, targets, training_values)
    if kind not in CLASS_TASKS:
        return kind, list(targets)
    names = list(class_names) if class_names is not None else class_names_of(training_values[targets[0]])
    if kind == "binary" and len(names) != 2:
        raise ConfigError(f"data_loader.args.task is \"binary\", but the target column '{targets[0]}' has "
                          f"{len(names)} distinct values ({', '.join(names[:10])}). A binary task needs exactly two; "
                          "use \"classification\" for more.")
    return kind, names


def encode_targets(values, kind, names, path, key, lines):
    """The targets of rows of one file starting on `lines` (`values`: their target columns) in the
    shape of data_loader/task.py's rule: class indices, 0/1 floats, or float columns."""
    if kind in CLASS_TASKS:
        indices = label_indices(values.iloc[:, 0].reset_index(drop=True), names, path, key, lines)
        return indices if kind == "classification" else indices.astype(np.float32)
    numbers = values.apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    if kind == "multilabel":
        bad = ~np.isin(numbers, (0.0, 1.0))
        if bad.any():
            row, column = np.argwhere(bad)[0]
            raise ConfigError(f"{key} '{path}' line {lines[row]}: the label column "
                              f"'{values.columns[column]}' is {str(values.iloc[row, column])!r}; a multi-label target "
                              "holds 0 or 1 in each label column. Fix the value, or use task \"regression\".")
    return numbers.astype(np.float32)


def fit_table_preprocessing(frame, features, categorical, standardize):
    """Plain data fitted on the training rows `frame`: each numeric column's fill value (median)
    and mean/std, each categorical column's categories and fill value (most frequent)."""
    numeric, categories = {}, {}
    for column in features:
        if column in categorical:
            values = frame[column].dropna().astype(str)
            levels = sorted(values.unique())
            categories[column] = {"levels": levels, "fill": values.mode().iloc[0] if len(values) else ""}
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        fill = float(values.median()) if values.notna().any() else 0.0
        filled = values.fillna(fill)
        std = float(filled.std(ddof=0)) if standardize else 1.0
        numeric[column] = {"fill": fill, "mean": float(filled.mean()) if standardize else 0.0,
                           "std": std if std > 0 else 1.0}
    return {"features": list(features), "numeric": numeric, "categorical": categories}


def apply_table_preprocessing(frame, preprocessing):
    """float32 array (rows x inputs) of `frame`: numeric columns filled and standardised, then one
    0/1 column per category of each categorical column (an unseen category gives all zeros)."""
    missing = [c for c in preprocessing["features"] if c not in frame.columns]
    if missing:
        raise ConfigError(f"the table lacks the column(s) {', '.join(missing)} that the model was trained on.")
    blocks = []
    for column in preprocessing["features"]:
        if column in preprocessing["numeric"]:
            stats = preprocessing["numeric"][column]
            values = pd.to_numeric(frame[column], errors="coerce").fillna(stats["fill"]).to_numpy(np.float64)
            blocks.append(((values - stats["mean"]) / stats["std"])[:, None])
        else:
            spec = preprocessing["categorical"][column]
            values = frame[column].fillna(spec["fill"]).astype(str).to_numpy()
            blocks.append((values[:, None] == np.asarray(spec["levels"])[None, :]).astype(np.float64))
    return np.concatenate(blocks, axis=1).astype(np.float32) if blocks else np.zeros((len(frame), 0), np.float32)


def input_size(preprocessing):
    """Number of model inputs that `apply_table_preprocessing` produces."""
    return len(preprocessing["numeric"]) + sum(len(c["levels"]) for c in preprocessing["categorical"].values())


class TableRows:
    """The rows of one or more CSV files (training, then validation) before preprocessing.
    `tensor(train_rows)` fits the preprocessing on those rows (unless it is given) and returns
    every row as model inputs. `sources` holds each row's (file, line number)."""

    def __init__(self, frame, labels, sources, features, categorical, standardize, problems, preprocessing=None):
        self.frame, self.labels, self.sources = frame.reset_index(drop=True), np.asarray(labels), sources
        self.features, self.categorical, self.standardize = features, categorical, standardize
        self.problems, self.preprocessing = problems, preprocessing

    def __len__(self):
        return len(self.frame)

    def subset(self, keep):
        return TableRows(self.frame.iloc[keep], self.labels[keep], [self.sources[i] for i in keep], self.features,
                         self.categorical, self.standardize, {}, self.preprocessing)

    def with_labels(self, labels):
        return TableRows(self.frame, labels, self.sources, self.features, self.categorical, self.standardize,
                         self.problems, self.preprocessing)

    def describe(self, index):
        path, line = self.sources[index]
        return f"'{path}' line {line}"

    def source_rows(self, indices):
        """The rows at `indices` as written in their files: "input" names the row as predict.py
        does ("<file> line <N>"), then "line" and every column of the file."""
        indices = [int(i) for i in indices]
        rows = self.frame.iloc[indices].reset_index(drop=True)
        files, lines = [Path(self.sources[i][0]).name for i in indices], [self.sources[i][1] for i in indices]
        located = pd.DataFrame({"input": [f"{name} line {line}" for name, line in zip(files, lines)], "line": lines})
        return pd.concat([located, rows], axis=1)

    def tensor(self, train_rows):
        import torch

        if self.preprocessing is None:
            self.preprocessing = fit_table_preprocessing(self.frame.iloc[train_rows], self.features,
                                                         self.categorical, self.standardize)
        return torch.from_numpy(apply_table_preprocessing(self.frame, self.preprocessing))


def load_table_rows(files, target, features, categorical, missing_values, standardize, task="auto",
                    class_names=None, preprocessing=None, exclude=(), limits=DEFAULT_LIMITS):
    """(TableRows, task kind, names, fixed validation mask) of `files` = [(path, config key, is
    validation)], with bad rows noted in `problems`. The task and the class names come from the
    training files' targets unless given (test data)."""
    targets = target_columns(target)
    frames, sources, problems, fixed_valid, offsets, file_lines = [], [], {}, [], [], []
    for path, key, is_valid in files:
        table = read_table(path, key, limits)
        frame, lines = table.frame, table.lines
        if frame.empty:
            raise ConfigError(f"{key} '{path}' has a header row but no data rows. Add rows, one per sample.")
        check_columns(frame, path, targets, features)
        columns = feature_columns(frame, targets, features, exclude)
        if not features:
            _warn_of_unnamed_features(path, columns)
        chosen_categorical = list(categorical) if categorical is not None else \
            guess_categorical(frame.drop(index=list(table.problems)), columns)
        offset = sum(len(f) for f in frames)
        offsets.append(offset)
        found = {**row_problems(table, targets, columns, chosen_categorical, missing_values,
                                numeric_targets=task in ("regression", "multilabel")),
                 **table.problems}  # a record that could not be read: its own problem, not "empty"
        problems.update({offset + position: text for position, text in found.items()})
        frames.append(frame)
        file_lines.append(lines)
        sources += [(str(path), int(line)) for line in lines]
        fixed_valid += [is_valid] * len(frame)
    frame = pd.concat(frames, ignore_index=True)
    good = np.array([i not in problems for i in range(len(frame))])
    training_rows = good & ~np.asarray(fixed_valid)
    try:
        kind, names = table_task(task, targets, frame.loc[training_rows, targets], class_names)
    except ConfigError as err:
        raise ConfigError(f"{_training_files(files)}{_left_out(problems)}: {err}") from None
    encoded = [None] * len(frame)
    for (path, key, _), offset, part, lines in zip(files, offsets, frames, file_lines):  # each file's own lines
        positions = np.flatnonzero(good[offset:offset + len(part)])
        for position, value in zip(positions, encode_targets(part[targets].iloc[positions], kind, names, path, key,
                                                             lines[positions])):
            encoded[offset + position] = value
    labels = _stack_targets(encoded, kind, len(targets))
    rows = TableRows(frame, labels, sources, columns, chosen_categorical, standardize, problems, preprocessing)
    return rows, kind, names, np.asarray(fixed_valid)


def _warn_of_unnamed_features(path, columns):
    """A column without a name in the header is most often the row index that DataFrame.to_csv
    writes by default: as a feature it tells the model each row's position in the file."""
    unnamed = [c for c in columns if str(c).startswith("Unnamed: ")]
    if unnamed:
        names = ", ".join(repr(c) for c in unnamed)
        logger.warning(f"'{path}' has {len(unnamed)} column(s) without a name in its header (read as {names}), "
                       "used as features. If one is a row index (DataFrame.to_csv writes one unless index=False), "
                       "list the real features in data_loader.args.features.")


def _stack_targets(encoded, kind, width):
    """One array of every row's target; bad rows (None) get a placeholder and are dropped later."""
    if kind == "classification":
        return np.array([-1 if v is None else v for v in encoded], dtype=np.int64)
    if kind == "binary":
        return np.array([np.nan if v is None else v for v in encoded], dtype=np.float32)
    return np.stack([np.full(width, np.nan, np.float32) if v is None else v for v in encoded]).astype(np.float32)


def _training_files(files):
    return ", ".join(f"{key} '{path}'" for path, key, is_valid in files if not is_valid)


def _left_out(problems):
    return f" ({len(problems)} bad row(s) left out)" if problems else ""
