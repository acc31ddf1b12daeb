"""CSV tables: feature columns and a target column. Numeric columns are filled (when
`missing_values` is "fill") and standardised, categorical columns one-hot encoded. What is fitted
on the training rows is kept as plain data (`preprocessing`), recorded in the run's config, and
`apply_table_preprocessing(frame, preprocessing)` turns any DataFrame with those columns into the
model's input, e.g. new rows to predict."""

import numpy as np
import pandas as pd

from utils import ConfigError

from .csv_reader import read_table
from .file_limits import DEFAULT_LIMITS

MISSING_POLICIES = ("error", "fill")


def read_csv(path, key, limits=DEFAULT_LIMITS):
    """The table at `path` (named by config `key`) when every row is usable, its index the file line
    each row starts on; a bad row is a ConfigError that names the lines."""
    table = read_table(path, key, limits)
    if table.problems:
        first = [table.problems[p] for p in sorted(table.problems)[:3]]
        raise ConfigError(f"{len(table.problems)} bad row(s): {'; '.join(first)}"
                          f"{' ...' if len(table.problems) > 3 else ''}. Fix or remove them.")
    return table.frame.set_axis(table.lines, axis=0)


def check_columns(frame, path, target, features):
    """A clear error for a target or feature column that the file lacks."""
    for name, key in [(target, "target"), *[(f, "features") for f in features or []]]:
        if name not in frame.columns:
            raise ConfigError(f"'{path}' has no column '{name}' (data_loader.args.{key}). Its columns are: "
                              f"{', '.join(map(str, frame.columns))}. Fix the column name in the config.")


def feature_columns(frame, target, features, exclude=()):
    return list(features) if features else [c for c in frame.columns if c != target and c not in exclude]


def guess_categorical(frame, columns):
    """Columns whose values are mostly not numbers (one stray text value keeps a column numeric)."""
    categorical = []
    for column in columns:
        values = frame[column].dropna()
        numeric = pd.to_numeric(values, errors="coerce").notna().mean() if len(values) else 1.0
        if numeric < 0.5:
            categorical.append(column)
    return categorical


def row_problems(frame, path, target, features, categorical, missing_values, lines):
    """{row position: message naming the file, line and column} for rows that cannot be used;
    `lines[i]` is the file line of row i."""
    problems = {}

    def note(mask, text):
        for position in np.flatnonzero(mask.to_numpy()):
            problems.setdefault(int(position), f"'{path}' line {lines[position]}: {text}")

    note(frame[target].isna(), f"the target column '{target}' is empty")
    for column in features:
        if missing_values == "error":
            note(frame[column].isna(), f"column '{column}' is empty (missing value)")
        if column not in categorical:
            values = frame[column]
            not_number = pd.to_numeric(values, errors="coerce").isna() & values.notna()
            for position in np.flatnonzero(not_number.to_numpy()):
                problems.setdefault(int(position), f"'{path}' line {lines[position]}: column '{column}' is "
                                                   f"{values.iloc[position]!r}, not a number")
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
    every row as model inputs."""

    def __init__(self, frame, labels, origins, features, categorical, standardize, problems, preprocessing=None):
        self.frame, self.labels, self.origins = frame.reset_index(drop=True), np.asarray(labels), origins
        self.features, self.categorical, self.standardize = features, categorical, standardize
        self.problems, self.preprocessing = problems, preprocessing

    def __len__(self):
        return len(self.frame)

    def subset(self, keep):
        return TableRows(self.frame.iloc[keep], self.labels[keep], [self.origins[i] for i in keep], self.features,
                         self.categorical, self.standardize, {}, self.preprocessing)

    def describe(self, index):
        return self.origins[index]

    def tensor(self, train_rows):
        import torch

        if self.preprocessing is None:
            self.preprocessing = fit_table_preprocessing(self.frame.iloc[train_rows], self.features,
                                                         self.categorical, self.standardize)
        return torch.from_numpy(apply_table_preprocessing(self.frame, self.preprocessing))


def load_table_rows(files, target, features, categorical, missing_values, standardize, class_names=None,
                    preprocessing=None, exclude=(), limits=DEFAULT_LIMITS):
    """TableRows of `files` = [(path, config key, is validation)], with bad rows noted in `problems`.
    Class names come from the training files' targets unless given (test data)."""
    frames, origins, problems, fixed_valid, offsets, file_lines = [], [], {}, [], [], []
    for path, key, is_valid in files:
        table = read_table(path, key, limits)
        frame, lines = table.frame, table.lines
        if frame.empty:
            raise ConfigError(f"{key} '{path}' has a header row but no data rows. Add rows, one per sample.")
        check_columns(frame, path, target, features)
        columns = feature_columns(frame, target, features, exclude)
        chosen_categorical = list(categorical) if categorical is not None else \
            guess_categorical(frame.drop(index=list(table.problems)), columns)
        offset = sum(len(f) for f in frames)
        offsets.append(offset)
        found = {**row_problems(frame, path, target, columns, chosen_categorical, missing_values, lines),
                 **table.problems}  # a record that could not be read: its own problem, not "empty"
        problems.update({offset + position: text for position, text in found.items()})
        frames.append(frame)
        file_lines.append(lines)
        origins += [f"'{path}' line {line}" for line in lines]
        fixed_valid += [is_valid] * len(frame)
    frame = pd.concat(frames, ignore_index=True)
    good = np.array([i not in problems for i in range(len(frame))])
    training_rows = good & ~np.asarray(fixed_valid)
    if class_names is None:
        class_names = class_names_of(frame[target][training_rows])
    labels = np.full(len(frame), -1, dtype=np.int64)
    for (path, key, _), offset, part, lines in zip(files, offsets, frames, file_lines):  # each file's own lines
        positions = np.flatnonzero(good[offset:offset + len(part)])
        labels[offset + positions] = label_indices(part[target].iloc[positions].reset_index(drop=True),
                                                    class_names, path, key, lines[positions])
    rows = TableRows(frame, labels, origins, columns, chosen_categorical, standardize, problems, preprocessing)
    return rows, class_names, np.asarray(fixed_valid)
