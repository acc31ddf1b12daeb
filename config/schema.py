"""Every setting the framework itself reads, declared once: its type, default, allowed range or
choices and a one-line description. Validation (config/validation.py), the filled-in defaults
and the reference page docs/config.md all come from these tables.

To add a setting, add one `Setting(...)` line to the section that reads it:

    Setting("warmup_epochs", int, 0, "epochs of linear learning-rate warm-up", minimum=0),

then read the filled-in value where it is used: `config.settings.trainer.warmup_epochs` (or
`self.settings.warmup_epochs` inside a trainer), never `config["trainer"].get(key, default)`.
Run `python -m config.docs` to refresh docs/config.md (a test fails until you do).

- `kind`: the JSON type(s) accepted: int, float (an int is accepted too), str, bool, dict, list.
- `default`: filled in when the key is absent; `REQUIRED` makes the key mandatory, `ABSENT`
  leaves an optional section out of the config when it is not given.
- `minimum`, `below` (exclusive upper bound), `maximum`, `choices`, `nullable` (null allowed)
  and `check` (a function value -> problem sentence or None) bound the value.

A new section (e.g. "callbacks") is a tuple of settings added to `SECTIONS`; arguments of a new
built-in data loader go into `DATA_LOADER_ARGS` under its class name. A Trainer subclass declares
keys of its own in its `extra_settings` class attribute (see base/base_trainer.py); they are
then checked like these.
"""
from collections.abc import Callable
from dataclasses import dataclass

from utils.monitor import Monitor


class _Marker:
    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


REQUIRED = _Marker("REQUIRED")  # the key must be given
ABSENT = _Marker("ABSENT")  # optional, and left out of the config when not given

KIND_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false",
              dict: "an object {...}", list: "a list [...]"}


@dataclass(frozen=True)
class Setting:
    key: str
    kind: type | tuple
    default: object
    description: str
    minimum: float | None = None
    maximum: float | None = None
    below: float | None = None
    choices: tuple | None = None
    nullable: bool = False
    check: Callable | None = None

    @property
    def kinds(self):
        return self.kind if isinstance(self.kind, tuple) else (self.kind,)

    def problem(self, value):
        """None when `value` is allowed, else a sentence saying what is wrong (without the key)."""
        if value is None:
            return None if self.nullable else f"is null, but {self.expected()} is expected"
        if not any(_is_kind(value, kind) for kind in self.kinds):
            quoted = isinstance(value, str) and bool({int, float, bool} & set(self.kinds))
            hint = "; write it without quotes" if quoted else ""
            return f"is {value!r} ({type(value).__name__}), but {self.expected()} is expected{hint}"
        if self.choices is not None and value not in self.choices:
            return f"is {value!r}; use one of {', '.join(_json(c) for c in self.choices)}"
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            bound = self._range_problem(value)
            if bound:
                return bound
        return self.check(value) if self.check else None

    def _range_problem(self, value):
        if self.minimum is not None and value < self.minimum:
            return f"is {value}; it must be at least {self.minimum}"
        if self.maximum is not None and value > self.maximum:
            return f"is {value}; it must be at most {self.maximum}"
        if self.below is not None and value >= self.below:
            return f"is {value}; it must be below {self.below}"
        return None

    def expected(self):
        names = " or ".join(KIND_NAMES.get(kind, kind.__name__) for kind in self.kinds)
        return f"{names}{' or null' if self.nullable else ''}"


def _is_kind(value, kind):
    if isinstance(value, bool):
        return kind is bool
    if kind is float:
        return isinstance(value, (int, float))
    return isinstance(value, kind)


def _json(value):
    return {True: "true", False: "false", None: "null"}.get(value, repr(value)) \
        if value is None or isinstance(value, bool) else repr(value)


def _monitor_problem(value):
    """"off", "min KEY" or "max KEY"; KEY must be logged"""
    return Monitor.problem(value)


def _val_every_n_steps_problem(value):
    """a whole number of optimizer steps, or a fraction of an epoch in (0, 1)"""
    if isinstance(value, float) and not value.is_integer() and not 0.0 < value < 1.0:
        return (f"is {value}; write a whole number of optimizer steps (e.g. 500) or a fraction of an "
                "epoch between 0 and 1 (e.g. 0.25 validates four times per epoch)")
    if value is not None and value <= 0:
        return f"is {value}; it must be above 0 (null validates once per epoch)"
    return None


def _validation_split_problem(value):
    """a fraction in [0, 1) or a count below the dataset size"""
    if isinstance(value, float) and not 0.0 <= value < 1.0:
        return (f"is {value}; write a fraction in [0, 1) (e.g. 0.1) or a whole number of "
                "validation samples")
    if isinstance(value, int) and value < 0:
        return f"is {value}; the number of validation samples cannot be negative"
    return None


TOP_LEVEL = (
    Setting("name", str, REQUIRED, "experiment name: runs are saved under save_dir/models/<name>/<run_id>/"),
    Setting("n_gpu", int, 1, "GPUs to use without torchrun (DataParallel above 1, 0 for the CPU)",
            minimum=0),
    Setting("seed", int, 123, "seed of every random generator: the same seed repeats a run exactly"),
    Setting("arch", dict, REQUIRED, "the model: {\"type\", \"args\"} plus the transfer-learning keys below"),
    Setting("data_loader", dict, REQUIRED, "the training data: {\"type\", \"args\"}"),
    Setting("optimizer", dict, REQUIRED, "{\"type\", \"args\"}, e.g. Adam from torch.optim"),
    Setting("loss", (str, dict), REQUIRED, "a function name from model/loss.py or torch, or {\"type\", \"args\"}"),
    Setting("metrics", list, REQUIRED, "metric names (or {\"type\", \"args\", \"name\"} entries) logged each epoch"),
    Setting("lr_scheduler", dict, ABSENT, "{\"type\", \"args\"} from torch.optim.lr_scheduler; absent: constant rate",
            nullable=True),
    Setting("trainer", dict, REQUIRED, "the training loop's settings (next table)"),
    Setting("tune", dict, ABSENT, "hyperparameter search space and study settings for tune.py"),
    Setting("wandb", (bool, dict), ABSENT, "Weights & Biases writer settings (also allowed inside trainer)",
            nullable=True),
    Setting("callbacks", list, ABSENT, "[{\"type\", \"args\"}]: trainer callbacks (base.Callback subclasses)"),
    Setting("class_names", list, ABSENT, "the classes' names in label order; train.py records the data loader's"),
    Setting("task", str, ABSENT, "classification, binary, multilabel or regression; train.py records the data "
            "loader's (set it for a loader that does not say)",
            choices=("classification", "binary", "multilabel", "regression")),
    Setting("target_names", list, ABSENT, "regression: the target columns in output order; train.py records them"),
)

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

TRAINER = (
    Setting("epochs", int, REQUIRED, "number of epochs to train", minimum=1),
    Setting("save_dir", str, "saved/", "root of the output folders (models/ and log/ go below it)"),
    Setting("save_period", int, 1, "write checkpoint-epoch<N>.pth every N epochs (the last epoch is always saved)",
            minimum=1),
    Setting("verbosity", int, 2, "0 warnings, 1 info, 2 debug (per-step lines when not on a terminal)",
            choices=(0, 1, 2)),
    Setting("monitor", str, "off", "\"off\", \"min KEY\" or \"max KEY\" for a logged key; model_best.pth follows it",
            check=_monitor_problem),
    Setting("early_stop", int, 0, "stop after this many validations without improvement of the monitored key (0: off)",
            minimum=0, nullable=True),
    Setting("tensorboard", bool, True, "write TensorBoard events to the run's log folder"),
    Setting("len_epoch", int, None, "iteration-based training: an epoch is this many batches of an endless stream",
            minimum=1, nullable=True),
    Setting("log_step", int, None, "log the running training loss every N batches (null: sqrt(batch_size))",
            minimum=1, nullable=True),
    Setting("image_period", int, 1, "epochs between input-image grids in TensorBoard", minimum=1),
    Setting("histogram_period", int, 1, "epochs between parameter histograms in TensorBoard", minimum=1),
    Setting("amp", str, None, "mixed precision: \"bf16\" or \"fp16\" (with a GradScaler); null: off",
            choices=("bf16", "fp16"), nullable=True),
    Setting("accum_steps", int, 1, "accumulate gradients over N batches per optimizer step", minimum=1),
    Setting("clip_grad_norm", float, None, "clip the gradient norm to this value; null: no clipping",
            minimum=0, nullable=True),
    Setting("channels_last", bool, False, "convert the model and 4-D inputs to channels-last memory format"),
    Setting("on_nonfinite", str, "stop", "on a NaN/Inf loss: \"stop\" the run, or \"skip\" that optimizer step",
            choices=("stop", "skip")),
    Setting("keep_last", int, 0, "keep only the newest K checkpoint-epoch files (0 keeps all; model_best is kept)",
            minimum=0),
    Setting("save_top_k", int, 0, "also keep the K best checkpoints by trainer.monitor, the value in the name (0: off)",
            minimum=0),
    Setting("save_last", bool, False, "keep checkpoint-last.pth: the newest state, replaced at every save"),
    Setting("save_every_n_steps", int, None, "write a checkpoint-epoch<E>-step<K>.pth every N optimizer steps",
            minimum=1, nullable=True),
    Setting("val_every_n_steps", float, None, "validate every N optimizer steps, or a fraction (0, 1) of an epoch; "
            "null: at each epoch's end", nullable=True, check=_val_every_n_steps_problem),
    Setting("compile", (bool, str), False, "torch.compile the model: true, false or a mode name",
            choices=(True, False, *COMPILE_MODES), nullable=True),
    Setting("cudnn_benchmark", bool, False, "let cuDNN time its algorithms per input shape (nondeterministic)"),
    Setting("deterministic", bool, False, "deterministic algorithms only, for runs that repeat bit for bit on a "
            "GPU too (slower; an operation without a deterministic version stops the run)"),
    Setting("non_blocking", bool, True, "copy batches to the GPU asynchronously"),
    Setting("wandb", (bool, dict), None, "Weights & Biases writer: true or {project, entity, ...}; null: off",
            nullable=True),
    Setting("ema", dict, None, "exponential moving average of the weights: {\"decay\", \"use_for_eval\"}; null: off",
            nullable=True),
    Setting("swa", dict, None, "stochastic weight averaging: {\"start_epoch\", \"lr\", \"anneal_epochs\", "
            "\"anneal_strategy\"}; null: off", nullable=True),
    Setting("validation_report", bool, False, "write the evaluation report of the last validation epoch"),
    Setting("mlflow", (bool, dict), None, "MLflow writer: true or {tracking_uri, experiment, ...}; null: off",
            nullable=True),
    Setting("activation_stats", int, None, "write per-layer activation mean/std every N training passes",
            minimum=1, nullable=True),
    Setting("strategy", str, "auto", "under torchrun: \"ddp\" (a full copy per process), \"fsdp\" (weights, "
            "gradients and optimizer state sharded), \"auto\" (ddp)", choices=("auto", "ddp", "fsdp")),
    Setting("fsdp", dict, None, "FSDP settings: {\"shard_modules\", \"reshard_after_forward\", \"param_dtype\", "
            "\"reduce_dtype\", \"cpu_offload\", \"activation_checkpointing\"} (docs/distributed.md)", nullable=True),
    Setting("profile", int, None, "profile N training steps after a warm-up: a trace, the top operators and "
            "the time shares in the log folder's profile/ (null: off)", minimum=1, nullable=True),
)

# keys of a {"type", "args"} entry; the sections below add their own
ENTRY = (
    Setting("type", str, REQUIRED, "class or function name, looked up in the section's module, then in torch"),
    Setting("args", dict, {}, "keyword arguments for the constructor"),
    Setting("module", str, ABSENT, "import path to look the type up in instead (e.g. \"torchvision.models\")"),
)
WEIGHT_FILE = (str, dict)  # a path, or {"path": ..., "strict": ...}
ARCH = ENTRY + (
    Setting("pretrained", WEIGHT_FILE, ABSENT, "weights to load before the head is replaced (strict)"),
    Setting("replace_head", dict, ABSENT, "{\"path\": module name, \"num_classes\": N}: a new Linear head"),
    Setting("init_from", WEIGHT_FILE, ABSENT, "weights of another checkpoint, loaded after the head (non-strict)"),
    Setting("freeze", list, ABSENT, "parameter-name patterns that do not train (e.g. [\"features.*\"])"),
    Setting("trainable", list, ABSENT, "parameter-name patterns that train; all others are frozen"),
)
LR_SCHEDULER = ENTRY + (
    Setting("interval", str, "epoch", "step the scheduler after each \"epoch\" or each optimizer \"step\"",
            choices=("epoch", "step")),
)
OPTIMIZER = ENTRY + (
    Setting("param_groups", list, ABSENT, "[{\"params\": pattern, \"lr\": ...}]: per-group optimizer args"),
)

SECTIONS = {
    "": TOP_LEVEL,
    "trainer": TRAINER,
    "arch": ARCH,
    "data_loader": ENTRY,
    "optimizer": OPTIMIZER,
    "lr_scheduler": LR_SCHEDULER,
}

IMAGE_MODES = ("L", "RGB")

# Limits on reading users' files. A file over a limit is a bad sample (or, for a config file, an
# error) that names it; data_loader.args raise them per run.
DEFAULT_MAX_IMAGE_PIXELS = 89_478_485  # PIL's Image.MAX_IMAGE_PIXELS, the size it warns above
DEFAULT_READ_TIMEOUT_S = 60.0  # a file that delivers no data for this long is given up on
DEFAULT_MAX_CSV_ROWS = 10_000_000
DEFAULT_MAX_CSV_FIELD_SIZE = 131_072  # characters: the csv module's own default limit
MAX_CONFIG_FILE_BYTES = 1 << 20  # a config file (or an ONNX model's sidecar) larger than 1 MiB is refused


def _image_size_problem(value):
    """one positive number or [height, width]"""
    sizes = value if isinstance(value, list) else [value]
    whole = all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in sizes)
    if whole and len(sizes) == (2 if isinstance(value, list) else 1):
        return None
    return f"is {value!r}; write one positive number (28) or [height, width]"


def _path(key, description):
    return Setting(key, str, None, description, nullable=True)


def _target_scaling_problem(value):
    """"auto", null, or the recorded {"mean": [...], "scale": [...]}"""
    if value == "auto" or (isinstance(value, dict) and set(value) == {"mean", "scale"}):
        return None
    return f"is {value!r}; write \"auto\", null, or {{\"mean\": [...], \"scale\": [...]}} as a run records it"


_TASK = Setting("task", str, "auto", "\"classification\", \"binary\", \"multilabel\", \"regression\", or "
                "\"auto\" (class labels when that is unambiguous; the run records what it chose)",
                choices=("auto", "classification", "binary", "multilabel", "regression"))
_CLASS_TASK = Setting("task", str, "auto", "\"classification\", \"binary\" (two classes, one output), or "
                      "\"auto\" (classification)", choices=("auto", "classification", "binary"))

# what the image folder, CSV and torchvision loaders share (data_loader/sample_loader.py)
_BATCHING = (
    Setting("batch_size", int, 64, "samples per batch, per process", minimum=1),
    Setting("shuffle", bool, True, "shuffle the training samples each epoch"),
    Setting("validation_split", (float, int), 0.0,
            "held-out share of the training set: a fraction in [0, 1) or a number of samples",
            check=_validation_split_problem),
    Setting("num_workers", int, 0, "decoding processes for the cache; DataLoader workers on the per-sample path",
            minimum=0),
    Setting("training", bool, True, "the training data (false: the test data)"),
)
_IMAGE_DECODING = (
    Setting("mode", str, "RGB", "decode images as \"L\" (grey, 1 channel) or \"RGB\" (3 channels)",
            choices=IMAGE_MODES),
    Setting("image_size", (int, list), None, "resize every image: 28 or [height, width] (null: keep each size)",
            nullable=True, check=_image_size_problem),
)
_SAMPLE_LOADER_COMMON = (
    Setting("transforms", dict, None, "{\"train\": [...], \"eval\": [...]}: torchvision.transforms.v2 steps",
            nullable=True),
    Setting("normalize", (str, dict), "auto", "\"auto\" (measured on the training split), {\"mean\", \"std\"} or "
            "null", nullable=True),
    Setting("in_memory", (bool, str), "auto", "decode everything into one tensor: \"auto\" (when it fits the "
            "budget), true or false", choices=(True, False, "auto")),
    Setting("memory_budget_gb", float, None, "memory budget of in_memory \"auto\" (null: a quarter of the RAM)",
            minimum=0, nullable=True),
    _path("cache_dir", "folder for an on-disk copy of the decoded tensors (null: none)"),
    Setting("data_device", str, None, "\"cuda\" keeps the in-memory tensors on the GPU", nullable=True),
    Setting("stratify", bool, False, "keep the class proportions in the validation split and the folds"),
    Setting("n_folds", int, 0, "k-fold: number of folds (0: use validation_split)", minimum=0),
    Setting("fold", int, 0, "k-fold: the fold that is the validation part (0 to n_folds - 1)", minimum=0),
    Setting("class_weights", str, None, "\"balanced\": inverse-frequency class weights for the loss",
            choices=("balanced",), nullable=True),
    Setting("weighted_sampler", bool, False, "draw training samples with replacement, each class equally often"),
    Setting("on_bad_sample", str, "error", "an unreadable image or bad row: \"error\" or \"skip\" (listed in "
            "skipped_samples.txt)", choices=("error", "skip")),
    Setting("limit", int, 0, "use a fixed random subset of N samples (0: all), for quick runs", minimum=0),
    Setting("seed", int, None, "seed of the split and the sample order (null: the run's seed)", nullable=True),
)

_IMAGE_LIMITS = (
    Setting("max_image_pixels", int, DEFAULT_MAX_IMAGE_PIXELS, "an image of more pixels (width x height) is a bad "
            "sample, found from its header before it is decoded (a decompression bomb)", minimum=1),
)
_READ_LIMITS = (
    Setting("read_timeout_s", float, DEFAULT_READ_TIMEOUT_S, "a file that delivers no data for this many seconds "
            "(a hung network mount) is a bad sample; null: wait forever", minimum=0.001, nullable=True),
)
_TABLE_LIMITS = (
    Setting("max_csv_rows", int, DEFAULT_MAX_CSV_ROWS, "a CSV file with more data rows is refused", minimum=1),
    Setting("max_csv_field_size", int, DEFAULT_MAX_CSV_FIELD_SIZE, "a CSV row with a longer cell (characters) is "
            "a bad row", minimum=1),
)

# arguments of the built-in data loaders (data_loader.args), by class name. Their defaults
# must equal the class signature's (a test checks); other keyword arguments go to torch's DataLoader.
DATA_LOADER_ARGS = {
    "MnistDataLoader": (
        Setting("data_dir", str, REQUIRED, "folder that holds (or receives) MNIST/raw"),
        Setting("batch_size", int, REQUIRED, "samples per batch, per process", minimum=1),
        Setting("shuffle", bool, True, "shuffle the training samples each epoch"),
        Setting("validation_split", (float, int), 0.0,
                "held-out share of the training set: a fraction in [0, 1) or a number of samples",
                check=_validation_split_problem),
        Setting("num_workers", int, 1, "worker processes (per-sample path only)", minimum=0),
        Setting("training", bool, True, "the training split (false: the test split)"),
        Setting("download", bool, True, "fetch the files into data_dir when they are missing"),
        Setting("limit", int, 0, "use only the first N samples (0: all), for quick runs", minimum=0),
        Setting("binary_target", int, None, "a digit: targets become 1.0 for it and 0.0 otherwise",
                minimum=0, maximum=9, nullable=True),
        Setting("in_memory", bool, True, "serve batches from one uint8 tensor (fast path)"),
        Setting("data_device", str, None, "\"cuda\" keeps the in-memory tensor on the GPU", nullable=True),
        Setting("seed", int, None, "seed of the split and the sample order (null: the run's seed)",
                nullable=True),
    ),
    "ImageFolderDataLoader": (
        _path("data_dir", "folder with one sub-folder of images per class, split into training and validation"),
        *_BATCHING,
        _path("train_dir", "training images (one sub-folder per class), instead of data_dir"),
        _path("val_dir", "validation images, beside train_dir"),
        _path("test_dir", "test images, which test.py evaluates"),
        Setting("extensions", list, None, "file extensions that are images (null: common image formats)",
                nullable=True),
        *_IMAGE_DECODING,
        _CLASS_TASK,
        *_SAMPLE_LOADER_COMMON,
        *_IMAGE_LIMITS,
        *_READ_LIMITS,
    ),
    "CsvDataLoader": (
        _path("csv_file", "one CSV table, split into training and validation"),
        *_BATCHING,
        _path("train_csv", "the training table, instead of csv_file"),
        _path("val_csv", "the validation table, beside train_csv"),
        _path("test_csv", "the test table, which test.py evaluates"),
        Setting("target", (str, list), "label", "the column to predict, or a list of columns (multi-output "
                "regression, multi-label)"),
        _TASK,
        Setting("target_scaling", (str, dict), "auto", "regression: \"auto\" standardises the targets with the "
                "training rows' mean and std (recorded as {\"mean\", \"scale\"}); null: as they are",
                nullable=True, check=_target_scaling_problem),
        Setting("features", list, None, "the input columns (null: every column but the target)", nullable=True),
        Setting("categorical", list, None, "columns to one-hot encode (null: those mostly not numbers)",
                nullable=True),
        Setting("missing_values", str, "error", "an empty cell: \"error\" (a bad row) or \"fill\" (training "
                "median / most frequent value)", choices=("error", "fill")),
        Setting("preprocessing", dict, None, "fitted column statistics (written by the run; leave it out)",
                nullable=True),
        _path("image_column", "a column of image paths relative to the CSV file (the rows are images)"),
        *_IMAGE_DECODING,
        *_SAMPLE_LOADER_COMMON,
        *_TABLE_LIMITS,
        *_IMAGE_LIMITS,
        *_READ_LIMITS,
    ),
    "TorchvisionDataLoader": (
        Setting("dataset", str, REQUIRED, "a torchvision.datasets class name: \"FashionMNIST\", \"CIFAR10\", ..."),
        Setting("data_dir", str, "data/", "the folder torchvision reads (and downloads) the files in"),
        *_BATCHING,
        Setting("download", bool, False, "let torchvision fetch the files when they are missing"),
        Setting("dataset_args", dict, None, "more arguments of the dataset class", nullable=True),
        Setting("mode", str, None, "convert images to \"L\" (grey) or \"RGB\" (null: as stored)",
                choices=IMAGE_MODES, nullable=True),
        Setting("image_size", (int, list), None, "resize every image: 28 or [height, width] (null: keep)",
                nullable=True, check=_image_size_problem),
        _CLASS_TASK,
        *_SAMPLE_LOADER_COMMON,
    ),
    "ShardDataLoader": (
        Setting("input_dir", str, REQUIRED, "shards written by python -m data_loader.optimize: a folder, or an "
                "s3:// or gs:// URL"),
        Setting("batch_size", int, 64, "samples per batch, per process", minimum=1),
        Setting("shuffle", bool, True, "shuffle the chunk order and the samples within each chunk every epoch"),
        Setting("num_workers", int, 0, "DataLoader worker processes that read and decode the shards", minimum=0),
        Setting("training", bool, True, "the training data (false: the test split)"),
        Setting("validation_split", (float, int), None, "leave it out: the shards hold their own val/ split",
                nullable=True, maximum=0),
        _path("cache_dir", "folder for chunks downloaded from object storage (null: LitData's default)"),
        Setting("max_cache_gb", float, None, "size limit of the chunk cache (null: LitData's default)",
                minimum=0, nullable=True),
        Setting("transforms", dict, None, "{\"train\": [...], \"eval\": [...]}: torchvision.transforms.v2 steps",
                nullable=True),
        Setting("normalize", (str, dict), "auto", "\"auto\" (measured when the shards were written), "
                "{\"mean\", \"std\"} or null", nullable=True),
        Setting("mode", str, None, "the shards' image mode (recorded by the run; null: as written)",
                choices=IMAGE_MODES, nullable=True),
        Setting("image_size", (int, list), None, "the shards' image size (recorded by the run; null: as written)",
                nullable=True, check=_image_size_problem),
        Setting("class_names", list, None, "the classes the shards must hold (recorded by the run; null: any)",
                nullable=True),
        Setting("preprocessing", dict, None, "a table's fitted preprocessing (recorded by the run; leave it out)",
                nullable=True),
        Setting("task", str, None, "the shards' task (recorded by the run; null: as written)", nullable=True,
                choices=("classification", "binary", "multilabel", "regression")),
        Setting("target_scaling", dict, None, "regression: the targets' standardisation (recorded by the run; "
                "leave it out)", nullable=True),
        Setting("on_bad_sample", str, "error", "samples left out when the shards were written: \"error\" or "
                "\"skip\" (listed in skipped_samples.txt)", choices=("error", "skip")),
        Setting("limit", int, 0, "use a fixed random subset of N training samples (0: all), for quick runs",
                minimum=0),
        Setting("seed", int, None, "seed of the sample order and the subset (null: the run's seed)", nullable=True),
    ),
}

# Trainer subclasses' own keys (BaseTrainer.extra_settings), added when the class is defined
EXTRA_TRAINER_SETTINGS = {}


def declare_trainer_settings(settings, owner):
    """Add a Trainer subclass's `extra_settings`; a key the framework already declares is refused."""
    builtin = {setting.key for setting in TRAINER}
    for setting in settings:
        if setting.key in builtin:
            raise TypeError(f"{owner}.extra_settings declares trainer.{setting.key}, which is a built-in "
                            "setting; choose another name.")
        EXTRA_TRAINER_SETTINGS[setting.key] = setting


def section_settings(section):
    """The declared settings of `section` ("" for the top level), Trainer extras included."""
    if section == "trainer":
        return TRAINER + tuple(EXTRA_TRAINER_SETTINGS.values())
    return SECTIONS.get(section, ())


def default_of(section, key):
    """The declared default of `section.key` (for reads before the defaults are filled in)."""
    return next(setting.default for setting in section_settings(section) if setting.key == key)


def is_declared(keys, config=None):
    """True for a key path that names a declared setting, e.g. ["trainer", "amp"]; given the
    config, also an argument of its built-in data loader, e.g. ["data_loader", "args", "limit"]."""
    if config is not None and len(keys) == 3 and keys[:2] == ["data_loader", "args"]:
        entry = config.get("data_loader")
        loader = entry.get("type") if isinstance(entry, dict) else None
        settings = DATA_LOADER_ARGS.get(loader, ()) if isinstance(loader, str) else ()
        return any(setting.key == keys[2] for setting in settings)
    section, key = ".".join(keys[:-1]), keys[-1]
    return any(setting.key == key for setting in section_settings(section))
