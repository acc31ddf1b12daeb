"""Label new inputs with a trained model:

    python predict.py -r saved/models/<name>/<run_id>/model_best.pth -i INPUT [-o predictions.csv]
                      [--top-k 3] [--batch-size 256] [-d DEVICES]
    python predict.py -m model_best.onnx -i INPUT ...          (an exported model, see export.py)

INPUT is a folder of images (searched recursively), one image file, or a CSV file in the training
table's format. Inputs are prepared with the checkpoint's own eval transforms or table
preprocessing. Each row of the output holds the input, the predicted class, its probability and
the top-k classes (regression: one predicted value per target, in the data's units); inputs that
cannot be used go to <output>_errors.csv with the reason. The command line is read first, so --help
answers before torch is imported."""
import argparse
import csv
import math
import os
from pathlib import Path

from config.sources import read_json_object
from utils import ConfigError, main_guard
from utils.errors import first_line
from utils.io import atomic_open


class TorchModel:
    """A checkpoint's model on the chosen device. The checkpoint's config is untrusted, as in
    test.py: it may only name the project's and torch's modules unless `trusted`."""

    def __init__(self, checkpoint_path, trusted=False, n_gpu=None):
        from data_loader.task import DAMAGED_CHECKPOINT_FIX, task_of_saved_run
        from evaluation.evaluate import model_from_checkpoint
        from parse_config import ConfigParser
        from run.resume import load_source
        from utils import prepare_device

        path = Path(checkpoint_path)
        if not path.exists():
            raise ConfigError(f"checkpoint '{path}' does not exist. Pass a .pth file or .dcp folder written by "
                              "train.py with -r.")
        source = load_source(None, path)  # the checkpoint's own config, read with the file once
        try:
            self.config = ConfigParser(source.config, resume=path, create_dirs=False, trusted=trusted,
                                       checkpoint=source.checkpoint)
        except ConfigError as err:  # the config came out of the checkpoint: say so
            raise ConfigError(f"the config stored in checkpoint '{path}' cannot be used: {err}") from None
        model, checkpoint = model_from_checkpoint(self.config)
        self.device, _ = prepare_device(self.config["n_gpu"] if n_gpu is None else n_gpu, warn=False)
        self.model = model.to(self.device)
        self.data_loader_section, self.trusted = self.config["data_loader"], trusted
        self.task = task_of_saved_run(f"checkpoint '{path}'", DAMAGED_CHECKPOINT_FIX, self.config, checkpoint)

    def __call__(self, batch):
        """The model's outputs; a regression model's in the data's units."""
        import torch

        with torch.inference_mode():
            return self.task.original_units(self.model(batch.to(self.device, non_blocking=True)).float())


class OnnxModel:
    """An exported ONNX model and its JSON sidecar (export.py writes both). A damaged, truncated
    or foreign file of either is a ConfigError naming it."""

    def __init__(self, model_path):
        path = Path(model_path)
        sidecar_path = path.with_name(path.name + ".json")
        if not path.is_file() or not sidecar_path.is_file():
            raise ConfigError(f"'{path}' or its sidecar '{sidecar_path}' does not exist. Export the model with "
                              "python export.py -r CHECKPOINT --format onnx, which writes both.")
        try:
            import onnxruntime
        except ImportError:
            raise ConfigError("-m needs the onnxruntime package: pip install onnxruntime "
                              "(listed in requirements-dev.txt).") from None
        self.path, self.sidecar = path, read_sidecar(sidecar_path)
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
                     if p in onnxruntime.get_available_providers()]
        try:
            self.session = onnxruntime.InferenceSession(str(path), providers=providers)
        except Exception as err:  # onnxruntime raises its own types for a damaged model: all mean unusable
            reason = first_line(err, 200, "no details")
            raise ConfigError(f"ONNX model '{path}' cannot be loaded ({type(err).__name__}: {reason}). "
                              "Export it again with export.py.") from None
        self.data_loader_section, self.trusted = self.sidecar["data_loader"], False
        check_input_pipeline(self.data_loader_section, sidecar_path)
        # the exported model's outputs are already in the data's units (export.py puts the target
        # scaling into the model), so no scaling here
        self.task = task_of_sidecar(self.sidecar, sidecar_path)
        self.fixed_batch = self.sidecar["input_shape"][0] if isinstance(self.sidecar["input_shape"][0], int) else None

    def __call__(self, batch):
        import torch

        if self.fixed_batch is None:
            return self._run(batch)
        # a model exported without --dynamic-batch takes exactly its batch size: pad the last one
        parts = []
        for start in range(0, len(batch), self.fixed_batch):
            part = batch[start:start + self.fixed_batch]
            padded = torch.cat([part, part[:1].expand(self.fixed_batch - len(part), *part.shape[1:])])
            parts.append(self._run(padded)[:len(part)])
        return torch.cat(parts)

    def _run(self, batch):
        import torch

        try:
            outputs = self.session.run(None, {self.sidecar["input_name"]: batch.float().numpy()})
        except Exception as err:  # a model that loads but does not fit its sidecar's input
            reason = first_line(err, 200, "no details")
            raise ConfigError(f"ONNX model '{self.path}' failed on inputs of shape {tuple(batch.shape)} "
                              f"({type(err).__name__}: {reason}). Export it again with export.py.") from None
        return torch.from_numpy(outputs[0])


def read_sidecar(path):
    """The sidecar's JSON object, with the keys predict.py needs checked."""
    sidecar = read_json_object(path, "ONNX sidecar", "Export the model again with export.py.")
    shape = sidecar.get("input_shape")
    problems = [problem for problem, bad in (
        ("data_loader must be an object", not isinstance(sidecar.get("data_loader"), dict)),
        ("input_name must be a string", not isinstance(sidecar.get("input_name"), str)),
        ("input_shape must be a list: the batch (\"batch\" or its fixed size), then each dimension of one "
         f"sample, all whole numbers from 1, at most {MAX_FIXED_BATCH_VALUES:,} numbers in a fixed batch",
         not _usable_input_shape(shape)),
        ("task must be a string", not isinstance(sidecar.get("task", ""), str)),
        ("class_names must be a list", not isinstance(sidecar.get("class_names") or [], list)),
    ) if bad]
    if problems:
        raise ConfigError(f"ONNX sidecar '{path}' is not one export.py wrote: {'; '.join(problems)}. Export the "
                          "model again with export.py.")
    return sidecar


MAX_FIXED_BATCH_VALUES = 1 << 28  # 1 GiB of float32: a fixed batch is padded to its full size on every call


def _usable_input_shape(shape):
    if not isinstance(shape, list) or not shape:
        return False
    batch, sample = shape[0], shape[1:]
    dims = sample if isinstance(batch, str) else [batch, *sample]
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in dims):
        return False
    return isinstance(batch, str) or math.prod(dims) <= MAX_FIXED_BATCH_VALUES


def check_input_pipeline(data_loader_section, sidecar_path):
    """A sidecar's data_loader section must rebuild an input pipeline (images) or hold a table's
    preprocessing; the error names the sidecar."""
    args = data_loader_section.get("args", {})
    if isinstance(args, dict) and args.get("preprocessing"):
        return
    try:
        from evaluation.inputs import image_pipeline

        image_pipeline(data_loader_section, trusted=False)
    except Exception as err:  # a damaged section fails in many ways: all mean this sidecar is unusable
        reason = first_line(err, 200, "no details")
        raise ConfigError(f"ONNX sidecar '{sidecar_path}': its data_loader section cannot rebuild the input "
                          f"pipeline ({reason}). Export the model again with export.py.") from None


def task_of_sidecar(sidecar, sidecar_path):
    """The Task an export sidecar records (older sidecars: "multiclass" and class_names)."""
    from data_loader.task import task_of_saved_run

    recorded = {"task": sidecar.get("task") or "classification", "class_names": sidecar.get("class_names"),
                "target_names": sidecar.get("target_names")}
    return task_of_saved_run(f"ONNX sidecar '{sidecar_path}'", "Export the model again with export.py.", recorded)


def main(model, input_path, output, top_k=3, batch_size=256, threshold=None, num_workers=None):
    """Predict every input; write the predictions and errors CSVs. Returns (rows, errors).
    `threshold`: binary and multi-label models (default evaluation.outputs.DEFAULT_THRESHOLD)."""
    rows, errors = predictions(model, input_path, top_k, batch_size, threshold, num_workers)
    write_outputs(Path(output), rows, errors)
    return rows, errors


def predictions(model, inputs, top_k=3, batch_size=256, threshold=None, num_workers=None):
    """(rows, errors) for `inputs`: a folder of images, an image, a CSV file, or a list of image
    files (api.predict)."""
    from tqdm import tqdm

    from evaluation.inputs import list_inputs
    from evaluation.outputs import DEFAULT_THRESHOLD

    threshold = DEFAULT_THRESHOLD if threshold is None else threshold
    kind, source = ("images", [Path(p) for p in inputs]) if isinstance(inputs, (list, tuple)) else list_inputs(inputs)
    rows, errors = [], []
    if kind == "images":
        batches = image_batches(source, model.data_loader_section, batch_size, num_workers, model.trusted)
        describe = lambda index: str(source[index])  # noqa: E731
    else:
        batches = table_batches(source, model.data_loader_section, batch_size)
        describe = str
    with tqdm(total=len(source) if kind == "images" else None, unit="input", disable=None) as progress:
        for keys, batch, batch_errors in batches:
            errors += [(describe(key), reason) for key, reason in batch_errors]
            if batch is not None:
                rows += prediction_rows([describe(k) for k in keys], model(batch), model, top_k, threshold)
            progress.update(len(keys) + len(batch_errors))
    return rows, errors


def image_batches(files, data_loader_section, batch_size, num_workers, trusted=False):
    import torch
    from torch.utils.data import DataLoader

    from evaluation.inputs import ImageInputs, collate_inputs, image_pipeline

    pipeline = image_pipeline(data_loader_section, trusted)
    workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
    loader = DataLoader(ImageInputs(files, pipeline), batch_size=batch_size, num_workers=workers,
                        collate_fn=collate_inputs, pin_memory=torch.cuda.is_available())
    yield from loader


def table_batches(csv_path, data_loader_section, batch_size):
    from evaluation.inputs import table_inputs

    labels, rows, errors = table_inputs(csv_path, data_loader_section)
    yield [], None, errors
    for start in range(0, len(labels), batch_size):
        yield labels[start:start + batch_size], rows[start:start + batch_size], []


def prediction_rows(keys, output, model, top_k, threshold):
    """One dict per input: input, then the predicted values (regression), or predicted,
    probability, then top-k or per-label columns."""
    from evaluation.outputs import output_names, predict_labels, probabilities

    task = model.task
    if task.kind == "regression":
        names = output_names(task, output.shape[1])
        values = output.reshape(len(keys), -1).cpu().tolist()
        return [{"input": key, **{f"predicted_{name}": value for name, value in zip(names, row)}}
                for key, row in zip(keys, values)]
    probs = probabilities(output, task.kind)
    names = output_names(task, probs.shape[1] if task.kind != "binary" else 2)
    labels, confidence = predict_labels(probs, task.kind, threshold)
    probs, labels, confidence = probs.cpu(), labels.cpu(), confidence.cpu()
    if task.kind == "classification":
        k = min(top_k, probs.shape[1])
        top_probs, top_classes = probs.topk(k, dim=1)
        rows = []
        for i, key in enumerate(keys):
            row = {"input": key, "predicted": names[labels[i]], "probability": float(confidence[i])}
            for rank in range(k):
                row[f"top{rank + 1}"] = names[top_classes[i, rank]]
                row[f"top{rank + 1}_probability"] = float(top_probs[i, rank])
            rows.append(row)
        return rows
    if task.kind == "binary":
        return [{"input": key, "predicted": names[labels[i]], "probability": float(confidence[i]),
                 f"probability_{names[1]}": float(probs[i, 0]), "threshold": threshold} for i, key in enumerate(keys)]
    return [{"input": key, "predicted": "|".join(n for n, on in zip(names, labels[i].tolist()) if on),
             "threshold": threshold, **{f"probability_{n}": float(p) for n, p in zip(names, probs[i].tolist())}}
            for i, key in enumerate(keys)]


def write_outputs(output, rows, errors):
    output.parent.mkdir(parents=True, exist_ok=True)
    write_csv(output, list(rows[0]) if rows else ["input", "predicted", "probability"], rows)
    errors_path = errors_file(output)
    write_csv(errors_path, ["input", "reason"], [{"input": key, "reason": reason} for key, reason in errors])
    print(f"{len(rows)} prediction(s) written to {output}; {len(errors)} input(s) could not be used"
          + (f", see {errors_path}" if errors else ""))


def write_csv(path, columns, rows):
    with atomic_open(path, "w") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n")
        # csv leaves a lone CR unquoted when lines end in LF, which would split the row: quote such rows whole
        quoting = csv.DictWriter(handle, fieldnames=columns, lineterminator="\n", quoting=csv.QUOTE_ALL)
        writer.writeheader()
        for row in rows:
            (quoting if any("\r" in str(value) for value in row.values()) else writer).writerow(row)


def errors_file(output):
    return output.with_name(output.stem + "_errors.csv")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="Predict classes (or values) for new inputs with a trained model.")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("-r", "--resume", help="checkpoint (.pth file or .dcp folder) written by train.py")
    source.add_argument("-m", "--model", help="ONNX model written by export.py (with its .json sidecar)")
    parser.add_argument("-i", "--input", required=True, help="folder of images, one image, or a CSV file")
    parser.add_argument("-o", "--output", default="predictions.csv", help="CSV to write (default: predictions.csv)")
    parser.add_argument("--top-k", type=int, default=3, help="classes listed per input (default: 3)")
    parser.add_argument("--batch-size", type=int, default=256, help="inputs per forward pass (default: 256)")
    parser.add_argument("--threshold", type=float, default=None,
                        help="binary and multi-label models: probability above which a label is predicted")
    parser.add_argument("--num-workers", type=int, default=None, help="image decoding processes (default: up to 4)")
    parser.add_argument("-d", "--device", default=None, help="indices of GPUs to use (default: all; none: CPU)")
    parser.add_argument("--trust", action="store_true",
                        help="allow the checkpoint's config to import modules outside the project and torch")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks for errors")
    args = parser.parse_args(argv)
    if args.top_k < 1 or args.batch_size < 1:
        raise ConfigError("--top-k and --batch-size must be at least 1.")
    return args


@main_guard
def run():
    args = parse_args()
    if args.device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = args.device
    model = TorchModel(args.resume, args.trust) if args.resume else OnnxModel(args.model)
    main(model, args.input, args.output, args.top_k, args.batch_size, args.threshold, args.num_workers)


if __name__ == "__main__":
    run()
