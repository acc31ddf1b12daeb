"""Export a checkpoint's model for programs that do not run this framework:

    python export.py -r saved/models/<name>/<run_id>/model_best.pth --format onnx [--dynamic-batch]

writes model_best.onnx (or .pt for --format torchscript) and model_best.onnx.json with the task,
the class or target names, the input shape, dtype and normalisation. A regression model is
exported with its target scaling inside, so its outputs are in the data's units. The exported
model is run on a real batch of the test split and compared with PyTorch; the largest absolute
difference is printed, and an export that differs by more than 1e-4 is deleted and the command
fails."""
import argparse
import importlib.util
import sys
import warnings
from pathlib import Path

import torch

from data_loader.task import DAMAGED_CHECKPOINT_FIX, task_of_saved_run
from evaluation.evaluate import model_from_checkpoint
from evaluation.inputs import normalisation_of
from evaluation.outputs import output_names
from parse_config import ConfigParser
from test import build_test_loader
from utils import ConfigError, main_guard, write_json

TOLERANCE = 1e-4
ONNX_OPSET = 17
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
EXIT_CHECK_FAILED = 1


class ExportCheckFailed(Exception):
    """The exported model's outputs differ from PyTorch's by more than the tolerance."""


def main(config, export_format, output=None, dynamic_batch=False, batch_size=64):
    """Export, check against PyTorch, write the sidecar. Returns (model path, max abs diff)."""
    if export_format == "onnx":
        require_onnx()
    model, checkpoint = model_from_checkpoint(config)
    task = task_of_saved_run(f"checkpoint '{config.resume}'", DAMAGED_CHECKPOINT_FIX, config, checkpoint)
    if task.kind == "regression" and task.scaling is not None:
        model = InDataUnits(model, task.scaling).eval()
    loader = build_test_loader(config)
    batch = real_batch(loader, batch_size)
    path = Path(output) if output else config.resume.with_suffix(SUFFIX[export_format])
    # a dynamic batch is traced with 2 samples and checked with the whole batch: a batch size
    # that stayed fixed by mistake fails the check instead of the first user's call
    example = batch[:2] if dynamic_batch and len(batch) > 2 else batch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (DeprecationWarning, FutureWarning, torch.jit.TracerWarning))
        if export_format == "onnx":
            export_onnx(model, example, path, dynamic_batch)
            difference = onnx_difference(model, path, batch)
        else:
            torch.jit.trace(model, example).save(str(path))
            difference = torchscript_difference(model, path, batch)
    unit = " (in target standard deviations)" if isinstance(model, InDataUnits) else ""
    print(f"Exported {path} ({export_format}); largest absolute difference from PyTorch on "
          f"{len(batch)} test samples: {difference:.3g}{unit} (tolerance {TOLERANCE:g})")
    if not difference <= TOLERANCE:
        path.unlink(missing_ok=True)
        raise ExportCheckFailed(f"the exported model differs from PyTorch by {difference:.3g}, more than "
                                f"{TOLERANCE:g}; {path} was deleted. Models with data-dependent control flow "
                                "or custom operations may not export faithfully.")
    with torch.no_grad():
        num_outputs = model(batch[:1]).reshape(1, -1).shape[1]
    write_json(sidecar(config, checkpoint, task, loader, batch, export_format, dynamic_batch, difference,
                       num_outputs), sidecar_path(path))
    print(f"Sidecar: {sidecar_path(path)}")
    return path, difference


def require_onnx():
    missing = [name for name in ("onnx", "onnxruntime") if importlib.util.find_spec(name) is None]
    if missing:
        raise ConfigError(f"--format onnx needs the {' and '.join(missing)} package(s), which are not "
                          "installed. Install them with: pip install onnx onnxruntime (both are listed in "
                          "requirements-dev.txt), or export with --format torchscript.")


def real_batch(loader, batch_size):
    """The first `batch_size` inputs of the test split, as float32 on the CPU."""
    for data, _ in loader:
        return data[:batch_size].float().cpu()
    raise ConfigError("the test split is empty, so there is no batch to check the export with. "
                      "Check data_loader.args (the test data folder or file).")


def export_onnx(model, example, path, dynamic_batch):
    # the TorchScript-based exporter: exact for the models here and fast; torch.export's
    # (dynamo=True) takes far longer for the same file
    dynamic_axes = {"input": {0: "batch"}, "output": {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(model, (example,), str(path), input_names=["input"], output_names=["output"],
                      dynamic_axes=dynamic_axes, opset_version=ONNX_OPSET, dynamo=False)


@torch.no_grad()
def onnx_difference(model, path, batch):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    exported = torch.from_numpy(session.run(None, {"input": batch.numpy()})[0])
    return largest_difference(exported, model(batch), model)


@torch.no_grad()
def torchscript_difference(model, path, batch):
    loaded = torch.jit.load(str(path), map_location="cpu")
    return largest_difference(loaded(batch), model(batch), model)


def largest_difference(exported, expected, model):
    """The largest absolute difference of two outputs; for a model in the data's units measured
    in units of each target's scale, so the tolerance does not depend on how large the values are."""
    difference = (exported - expected).abs()
    if isinstance(model, InDataUnits):
        difference = difference / model.scale
    return float(difference.max())


def sidecar_path(model_path):
    return model_path.with_name(model_path.name + ".json")


class InDataUnits(torch.nn.Module):
    """A regression model with its target scaling as the last step (outputs x scale + mean), so
    the exported file answers in the data's units."""

    def __init__(self, model, scaling):
        super().__init__()
        self.model = model
        self.register_buffer("scale", torch.tensor(scaling.scale, dtype=torch.float32))
        self.register_buffer("mean", torch.tensor(scaling.mean, dtype=torch.float32))

    def forward(self, x):
        return self.model(x) * self.scale + self.mean


def sidecar(config, checkpoint, task, loader, batch, export_format, dynamic_batch, difference, num_outputs):
    names = output_names(task, num_outputs if task.kind != "binary" else 2)
    return {
        "format": export_format,
        "checkpoint": str(config.resume), "epoch": checkpoint.get("epoch"),
        "task": task.kind,
        "class_names": names if task.kind != "regression" else None,
        "target_names": names if task.kind == "regression" else None,
        "outputs": "data units" if task.kind == "regression" else "scores",
        "input_name": "input", "output_name": "output",
        "input_shape": ["batch" if dynamic_batch else len(batch), *batch.shape[1:]],
        "input_dtype": str(batch.dtype).replace("torch.", ""),
        "normalization": normalisation_of(config, loader),
        "data_loader": config["data_loader"],  # predict.py -m rebuilds the eval pipeline from it
        "opset": ONNX_OPSET if export_format == "onnx" else None,
        "torch_version": torch.__version__,
        "max_abs_difference": difference,
    }


@main_guard
def run():
    parser = argparse.ArgumentParser(description="Export a checkpoint's model to ONNX or TorchScript.")
    parser.add_argument("-r", "--resume", required=True, help="checkpoint (.pth file or .dcp folder) to export")
    parser.add_argument("-c", "--config", default=None, help=argparse.SUPPRESS)
    parser.add_argument("-d", "--device", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--format", required=True, choices=sorted(SUFFIX), help="onnx or torchscript")
    parser.add_argument("--dynamic-batch", action="store_true", help="let the exported model take any batch size")
    parser.add_argument("--output", default=None, help="model file to write (default: next to the checkpoint)")
    parser.add_argument("--batch-size", type=int, default=64, help="test samples to check the export on")
    config = ConfigParser.from_args(parser, create_dirs=False, prefer_best=True)
    args = parser.parse_args()
    try:
        main(config, args.format, args.output, args.dynamic_batch, args.batch_size)
    except ExportCheckFailed as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(EXIT_CHECK_FAILED)


if __name__ == "__main__":
    run()
