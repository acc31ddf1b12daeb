"""Train, evaluate and predict from Python: a notebook or a script, in this process.

    from api import run, evaluate, predict

    result = run("config.json", overrides={"optimizer.args.lr": 0.01, "trainer.epochs": 5})
    result.best_value, result.best_epoch      # the monitored metric at its best, and that epoch
    result.history                            # one row per epoch (a pandas DataFrame)
    metrics = evaluate(result.best_checkpoint)            # test.py's numbers, as a dict
    table = predict(result.best_checkpoint, "new_images/")  # predict.py's rows, as a DataFrame

Each function does what its script does (train.py, test.py, predict.py run the same code) and
raises instead of exiting: ConfigError for a mistake in the config or the inputs, with the
message the script prints; TrainingStopped when a stop signal (Ctrl-C) ended training after
saving a checkpoint. Each call leaves the process as it found it (random generators, logging
handlers, signal handlers, threads, torch's settings), so calls are independent of each other.
"""
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

import predict as predict_script
import test as test_script
import train
from config.overrides import parse_override
from evaluation.outputs import DEFAULT_THRESHOLD
from experiments.run_info import read_run
from parse_config import ConfigParser
from run.folder import RunFolder
from run.record import default_command
from utils import ConfigError
from utils.process_state import restored_process_state

__all__ = ["RunResult", "run", "evaluate", "predict", "ConfigError"]


@dataclass
class RunResult:
    """What a run left: its folders, how it ended, the monitored metric at its best, the history
    (one row per epoch, as in metrics.csv) and the checkpoint files."""
    run_folder: RunFolder
    status: str  # finished, stopped, pruned, crashed
    monitor: str | None  # the monitored key (val_loss), None when trainer.monitor is "off"
    best_value: float | None
    best_epoch: int | None
    history: pd.DataFrame
    checkpoints: list  # Paths of every .pth file in the run folder, by name

    @classmethod
    def of(cls, run_folder):
        info = read_run(run_folder)
        best_value, best_epoch = info.best()
        return cls(run_folder=run_folder, status=info.status, monitor=info.monitor.key, best_value=best_value,
                   best_epoch=best_epoch, history=info.history,
                   checkpoints=sorted(run_folder.models_dir.glob("*.pth")))

    @property
    def run_dir(self):
        """The checkpoint folder, <save_dir>/models/<name>/<run_id>."""
        return self.run_folder.models_dir

    @property
    def log_dir(self):
        return self.run_folder.log_dir

    @property
    def best_checkpoint(self):
        """model_best.pth, or the newest checkpoint when nothing is monitored."""
        best = self.run_folder.checkpoint("model_best.pth")
        return best if best.is_file() else (self.checkpoints[-1] if self.checkpoints else None)


def run(config, overrides=None, resume=None, *, new_run=False, trust=False, run_id=None, callbacks=()):
    """Train as `python train.py -c CONFIG -r RESUME -o KEY=VALUE ...` does; return a RunResult.

    config: a config file's path or the config as a dict (None to resume with the
        checkpoint's own config, like `train.py -r`).
    overrides: {"optimizer.args.lr": 0.01, "+new.key": 1} (the `-o` flags), or a list of
        "key=value" strings.
    resume: a checkpoint, a run folder or "auto", as `-r`: with `config` a checkpoint only
        gives starting weights (fine-tuning), without it the run goes on in its own folder
        (or a new one with new_run=True).
    callbacks: base.Callback objects run after the config's.
    """
    if config is None and resume is None:
        raise ConfigError("run() needs a config (a path or a dict), or resume= a checkpoint or run folder.")
    with restored_process_state():
        parser = ConfigParser.from_source(config, resume, _modification(overrides), trust=trust, new_run=new_run)
        parser.run_id = run_id
        parser.command = _call_text("run", config=config, overrides=overrides, resume=resume)
        try:
            train.main(parser, callbacks=callbacks)
        finally:
            parser.release_run_lock()
        return RunResult.of(parser.run_folder)


def evaluate(checkpoint, config=None, overrides=None, *, report=False, trust=False):
    """Evaluate a checkpoint on the test split, as `python test.py -r CHECKPOINT` does; return
    {"checkpoint", "epoch", "samples", <loss and metrics>}, also written beside the checkpoint
    (<checkpoint>_test.json). config: another config for the data and metrics (`test.py -c`);
    report: also write the evaluation report (<checkpoint>_report/)."""
    with restored_process_state():
        parser = ConfigParser.from_source(config, _existing(checkpoint), _modification(overrides), trust=trust)
        return test_script.main(parser, write_evaluation_report=report)


def predict(checkpoint, inputs, *, top_k=3, batch_size=256, threshold=DEFAULT_THRESHOLD, output=None, trust=False,
            num_workers=None):
    """Predict, as `python predict.py -r CHECKPOINT -i INPUTS` does, and return one row per input
    (input, predicted, probability, top-k columns). inputs: a folder of images, one image, a CSV
    in the training table's format, or a list of image files. Inputs that cannot be used are
    left out and listed in the frame's attrs["errors"] as (input, reason). output: also write
    the CSVs there, as the script does."""
    with restored_process_state():
        model = predict_script.TorchModel(_existing(checkpoint), trust)
        rows, errors = predict_script.predictions(model, inputs, top_k, batch_size, threshold, num_workers)
        if output is not None:
            predict_script.write_outputs(Path(output), rows, errors)
    frame = pd.DataFrame(rows)
    frame.attrs["errors"] = errors
    return frame


def _modification(overrides):
    """`overrides` as ConfigParser's modification: {(keys, add_new_key): value}."""
    if overrides is None:
        return {}
    if isinstance(overrides, (list, tuple)):
        parsed = [parse_override(text) for text in overrides]
    elif isinstance(overrides, dict):
        parsed = [(key.lstrip("+").split("."), value, key.startswith("+")) for key, value in overrides.items()]
    else:
        raise ConfigError(f"overrides is a {type(overrides).__name__}; pass a dict {{'optimizer.args.lr': 0.01}} "
                          "or a list of 'key=value' strings.")
    return {(tuple(keys), force): value for keys, value, force in parsed}


def _existing(checkpoint):
    if not Path(checkpoint).exists():
        raise ConfigError(f"checkpoint '{checkpoint}' does not exist. Pass a .pth file written by training, "
                          "or a run folder.")
    return checkpoint


def _call_text(function, **arguments):
    """How a run was started, for its record: the call and the process it ran in."""
    shown = ", ".join(f"{name}={value!r}" for name, value in arguments.items() if value is not None)
    return f"api.{function}({shown}) in {default_command()}"
