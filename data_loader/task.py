"""The task of a run and what it means for the targets: which task a loader declares or infers,
the shape of its targets and of the model's output, the regression targets' standardisation,
and how every later step (test.py, the report, predict.py, export.py, runs.py) reads the task
back from a run's config or checkpoint. Nothing downstream guesses the task from output shapes.

Target and output shapes, one rule per task (N samples in a batch):

    classification  target (N,) int64 class indices        output (N, classes)
    binary          target (N,) float 0/1                   output (N, 1)
    multilabel      target (N, labels) float 0/1            output (N, labels)
    regression      target (N, targets) float, also for     output (N, targets)
                    one target: never (N,)

The checks before a run compare one batch's output with this rule; a loss never sees a target
that would only fit by broadcasting."""
from dataclasses import dataclass

import numpy as np
import torch

from utils.checkpoint import Key
from utils.errors import ConfigError, first_line

TASKS = ("classification", "binary", "multilabel", "regression")
TASK_CHOICES = ("auto", *TASKS)
# "auto" takes a numeric target as class labels only when it holds whole numbers with at most
# this many distinct values; anything else is ambiguous and needs data_loader.args.task
AUTO_MAX_CLASSES = 20
LEGACY_NAMES = {"multiclass": "classification"}  # report.json and export sidecars of older runs
CLASS_TASKS = ("classification", "binary")  # targets that are one class per sample


@dataclass(frozen=True)
class TargetScaling:
    """Regression targets are standardised for training: (y - mean) / scale per target column.
    Outputs and targets go back to the original units with `original`."""
    mean: tuple
    scale: tuple

    @classmethod
    def fit(cls, values):
        """Mean and standard deviation per column of the training targets (N, targets)."""
        values = np.asarray(values, dtype=np.float64)
        std = values.std(axis=0)
        return cls(tuple(float(m) for m in values.mean(axis=0)), tuple(float(s) if s > 0 else 1.0 for s in std))

    @classmethod
    def from_record(cls, record):
        """From the plain {"mean": [...], "scale": [...]} kept in a config or checkpoint; None stays None."""
        if not record:
            return None
        if not isinstance(record, dict) or set(record) != {"mean", "scale"}:
            raise ConfigError(f"data_loader.args.target_scaling is {record!r}; write \"auto\", null, or the "
                              "numbers a run recorded: {\"mean\": [...], \"scale\": [...]} (one per target).")
        return cls(tuple(float(v) for v in record["mean"]), tuple(float(v) for v in record["scale"]))

    def record(self):
        return {"mean": list(self.mean), "scale": list(self.scale)}

    def standardise(self, values):
        return (np.asarray(values, dtype=np.float64) - np.asarray(self.mean)) / np.asarray(self.scale)

    def original(self, values):
        """Tensor (N, targets) in the original units (on the tensor's own device)."""
        mean = torch.as_tensor(self.mean, dtype=values.dtype, device=values.device)
        scale = torch.as_tensor(self.scale, dtype=values.dtype, device=values.device)
        return values * scale + mean


@dataclass(frozen=True)
class Task:
    """`kind` is one of TASKS; `names` are the class names (binary: [negative, positive]), the
    label names (multilabel) or the target columns (regression); `scaling` is the regression
    targets' standardisation, or None."""
    kind: str
    names: tuple
    scaling: TargetScaling | None = None

    def __post_init__(self):
        if self.kind not in TASKS:
            raise ValueError(f"unknown task {self.kind!r}; one of {TASKS}")

    @property
    def num_outputs(self):
        """The width of the model's output: one score for a binary task, else one per name."""
        return 1 if self.kind == "binary" else len(self.names)

    @property
    def what(self):
        """'3 classes', '1 target', ... for messages."""
        count = len(self.names)
        noun = {"classification": "class", "binary": "class", "multilabel": "label", "regression": "target"}[self.kind]
        return f"{count} {noun}{'es' if noun == 'class' and count != 1 else 's' if count != 1 else ''}"

    def expected_output_shape(self, batch_size):
        if self.kind == "binary":
            return (batch_size, 1)
        return (batch_size, len(self.names))

    def original_units(self, values):
        """Outputs or targets of a regression task in the original units; anything else as it is."""
        if self.kind != "regression" or self.scaling is None:
            return values
        return self.scaling.original(values.float())

    def record(self):
        """What a run's config keeps at its top level (train.py writes it)."""
        names_key = "target_names" if self.kind == "regression" else "class_names"
        return {"task": self.kind, names_key: list(self.names)}

    def checkpoint_entries(self):
        """The task's checkpoint keys: task, its names, the target scaling."""
        return {Key.TASK: self.kind, Key.TARGET_NAMES: list(self.names) if self.kind == "regression" else None,
                Key.TARGET_SCALING: self.scaling.record() if self.scaling is not None else None}


def task_of_run(config, checkpoint=None):
    """The Task of a trained run from its checkpoint (its own keys, then its config) or from a
    config dict / ConfigParser. Runs that recorded no task (custom loaders, older runs) get one
    from their loss: a sigmoid loss with one output is binary, with more multi-label; anything
    else is classification."""
    checkpoint = checkpoint or {}
    config = config.config if hasattr(config, "config") else config
    kind = checkpoint.get(Key.TASK) or config.get("task") or _task_of_loss(config)
    kind = LEGACY_NAMES.get(kind, kind)
    if kind == "regression":
        names = checkpoint.get(Key.TARGET_NAMES) or config.get("target_names") or []
        scaling = checkpoint.get(Key.TARGET_SCALING) or _recorded_scaling(config)
        return Task(kind, tuple(names), TargetScaling.from_record(scaling))
    names = checkpoint.get(Key.CLASS_NAMES) or config.get("class_names") or []
    return Task(kind, tuple(str(n) for n in names))


DAMAGED_CHECKPOINT_FIX = "Use another checkpoint of the run, e.g. its run folder with -r."


def task_of_saved_run(where, fix, config, checkpoint=None):
    """task_of_run for a run read back from a file that may have been edited or damaged (a
    checkpoint, an export sidecar): what cannot be used is a ConfigError naming `where` (the
    file) and saying `fix`."""
    try:
        return task_of_run(config, checkpoint)
    except (ConfigError, ValueError, TypeError, AttributeError) as err:
        raise ConfigError(f"{where}: its task keys (task, class_names, target_names, target_scaling) cannot be used "
                          f"({first_line(err, 200)}). {fix}") from None


def _recorded_scaling(config):
    scaling = config.get("data_loader", {}).get("args", {}).get("target_scaling")
    return scaling if isinstance(scaling, dict) else None


def _task_of_loss(config):
    loss = config.get("loss")
    name = (loss if isinstance(loss, str) else (loss or {}).get("type", "")).lower()
    if "bce" in name or "binary" in name:
        return "binary" if config.get("arch", {}).get("args", {}).get("num_classes") == 1 else "multilabel"
    if any(word in name for word in ("mse", "l1", "huber")):
        return "regression"
    return "classification"


def check_task_choice(task, key="data_loader.args.task", allowed=TASK_CHOICES):
    if task not in allowed:
        raise ConfigError(f"{key} is {task!r}; use one of {', '.join(repr(t) for t in allowed)}.")


def folder_task(task, class_names, source):
    """The Task of a loader whose targets are class folders or dataset classes: "auto" and
    "classification" give classification, "binary" needs exactly two classes (the second, in
    sorted order, is the positive one)."""
    check_task_choice(task, allowed=("auto", "classification", "binary"))
    if task == "binary" and len(class_names) != 2:
        raise ConfigError(f"data_loader.args.task is \"binary\", but {source} has {len(class_names)} classes "
                          f"({', '.join(class_names[:10])}). A binary task needs exactly two; use "
                          "\"classification\" for more.")
    return Task("binary" if task == "binary" else "classification", tuple(class_names))


def infer_table_task(task, target_columns, values):
    """The task kind of a table's `target_columns` given their training `values` (a DataFrame).
    "auto" decides only where that is unambiguous: one column of text labels, or of a few whole
    numbers, is classification. A numeric target with many distinct values, fractions or several
    target columns stop with a ConfigError that asks for data_loader.args.task."""
    check_task_choice(task)
    if task != "auto":
        if len(target_columns) > 1 and task in CLASS_TASKS:
            raise ConfigError(f"data_loader.args.task is \"{task}\", which predicts one column, but "
                              f"data_loader.args.target names {len(target_columns)} columns. Use \"multilabel\" "
                              "(0/1 columns) or \"regression\" (numeric columns), or name one target column.")
        return task
    if len(target_columns) > 1:
        raise ConfigError(f"data_loader.args.target names {len(target_columns)} columns "
                          f"({', '.join(target_columns)}), and \"task\" is \"auto\". Say what they are: set "
                          "data_loader.args.task to \"regression\" (numbers to predict) or \"multilabel\" "
                          "(0/1 labels).")
    column = target_columns[0]
    series = values[column].dropna()
    numbers = _as_numbers(series)
    if numbers is None:
        return "classification"
    distinct = np.unique(numbers)
    whole = bool(np.all(np.equal(np.mod(distinct, 1), 0)))
    if whole and len(distinct) <= AUTO_MAX_CLASSES:
        return "classification"
    kind = "whole numbers" if whole else "numbers with fractions"
    raise ConfigError(f"the target column '{column}' holds {len(distinct)} distinct {kind} (e.g. "
                      f"{', '.join(_short(v) for v in distinct[:4])}), and data_loader.args.task is \"auto\", "
                      f"which takes numbers as classes only for at most {AUTO_MAX_CLASSES} distinct whole numbers. "
                      "Set data_loader.args.task to \"regression\" to predict the values, or to \"classification\" "
                      "to treat each value as a class.")


def _as_numbers(series):
    converted = np.asarray([_number(v) for v in series], dtype=object)
    if len(converted) and any(v is None for v in converted):
        return None
    return np.asarray(converted, dtype=np.float64)


def _number(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _short(value):
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def class_index(targets, task_kind):
    """Integer class labels of `targets` for stratified splits and class balancing (None where
    the targets are not one class per sample)."""
    if task_kind == "classification":
        return np.asarray(targets, dtype=np.int64)
    if task_kind == "binary":
        return np.asarray(targets).astype(np.int64)
    return None
