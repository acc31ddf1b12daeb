"""Convert a sharded checkpoint folder (.dcp, written by a run with trainer.strategy "fsdp") into
one .pth file of this framework: whole weights, the optimizer in torch's own format, and the
rest of the trainer state. The file is what a single-process or DDP run writes, so `train.py -r`,
`test.py -r` and plain `torch.load(path, weights_only=True)` read it anywhere.

    python -m utils.convert_checkpoint saved/models/<name>/<run_id>/model_best.dcp            # -> model_best.pth
    python -m utils.convert_checkpoint saved/models/<name>/<run_id>/model_best.dcp -o best.pth
"""
import argparse
from pathlib import Path

from .checkpoint import Key, load_checkpoint, whole_checkpoint
from .errors import ConfigError, main_guard
from .io import atomic_torch_save


def convert(source, target=None):
    """Write the .dcp folder `source` as a .pth file (default: beside it, same name); returns its path."""
    source = Path(source)
    if source.suffix != ".dcp" or not source.is_dir():
        raise ConfigError(f"'{source}' is not a sharded checkpoint folder (a .dcp folder written by a run with "
                          "trainer.strategy \"fsdp\").")
    target = Path(target) if target is not None else source.with_suffix(".pth")
    checkpoint = whole_checkpoint(load_checkpoint(source))
    checkpoint.pop(Key.TORCH_VERSION, None)  # a .pth file needs no particular torch
    atomic_torch_save(checkpoint, target)
    return target


@main_guard
def main(argv=None):
    parser = argparse.ArgumentParser(description="Convert a sharded .dcp checkpoint folder into one .pth file.")
    parser.add_argument("checkpoint", help="the .dcp folder")
    parser.add_argument("-o", "--output", default=None, help="the .pth file to write (default: beside the folder)")
    args = parser.parse_args(argv)
    print(f"Wrote {convert(args.checkpoint, args.output)}")


if __name__ == "__main__":
    main()
