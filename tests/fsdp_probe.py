"""train.py under torchrun with probes, for tests/test_fsdp.py: one launch trains one or more
runs in turn (argument lists separated by `--then`), and writes into PROBE_DIR

    loaded-world<N>.pth   the whole model and optimizer state right after a resumed checkpoint was
                          loaded (torch's optimizer format), gathered from every process
    memory-world<N>.json  per rank, after the first optimizer step: [bytes held, bytes of the whole
                          model] of the parameters and of the optimizer's tensors

A run's arguments may start with `--kill-at-save K`: rank 0 then SIGKILLs itself at the K-th
checkpoint folder it publishes, after every process wrote its part and before the rename.

    python -m torch.distributed.run --standalone --nproc_per_node=2 tests/fsdp_probe.py PROBE_DIR \\
        -c config.json --then --kill-at-save 3 -c config.json
"""
import json
import os
import signal
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from torch.distributed.checkpoint.state_dict import (  # noqa: E402
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
)

import train  # noqa: E402
import utils.dcp  # noqa: E402
from trainer.callback import Callback  # noqa: E402
from trainer.fsdp import sharded_bytes  # noqa: E402
from utils import dist, unwrap_model  # noqa: E402
from utils.checkpoint import optimizer_state_by_index  # noqa: E402
from utils.errors import main_guard  # noqa: E402

WHOLE = StateDictOptions(full_state_dict=True, cpu_offload=True)


class Probe(Callback):
    def __init__(self, probe_dir):
        self.probe_dir, self.measured = Path(probe_dir), False

    def on_fit_start(self, trainer):
        if trainer.config.resume is None:
            return
        model = unwrap_model(trainer.model)
        weights = get_model_state_dict(model, options=WHOLE)  # collectives: every rank calls them
        optimizer = get_optimizer_state_dict(model, trainer.optimizer, options=WHOLE)
        if dist.is_main_process():
            torch.save({"state_dict": weights, "optimizer": optimizer_state_by_index(optimizer)},
                       self.probe_dir / f"loaded-world{dist.world_size()}.pth")

    def on_step_end(self, trainer, batch_idx, loss, output, target):
        if self.measured:
            return
        self.measured = True
        per_rank = dist.all_gather_object(sharded_bytes(trainer.model, trainer.optimizer))
        if dist.is_main_process():
            (self.probe_dir / f"memory-world{dist.world_size()}.json").write_text(json.dumps(per_rank))


def kill_at_publish(count):
    """Make rank 0's `count`-th folder rename a SIGKILL of this process instead."""
    publish, calls = utils.dcp.publish, []

    def publish_or_die(temp, path):
        calls.append(path)
        if len(calls) == count:
            os.kill(os.getpid(), signal.SIGKILL)
        publish(temp, path)

    utils.dcp.publish = publish_or_die


@main_guard
def main():
    probe_dir, argv = Path(sys.argv[1]), sys.argv[2:]
    runs, current = [], []
    for arg in argv:
        if arg == "--then":
            runs, current = runs + [current], []
        else:
            current.append(arg)
    runs.append(current)
    with dist.distributed_session():
        for run_args in runs:
            if run_args[0] == "--kill-at-save":
                kill_at_publish(int(run_args[1]))
                run_args = run_args[2:]
            train_with_probe(run_args, probe_dir)


def train_with_probe(run_args, probe_dir):
    """train.py's main with the Probe, in the process group already set up."""
    parser, options = train.make_arg_parser()
    config = train.ConfigParser.from_args(parser, options, create_dirs=False, argv=list(map(str, run_args)))
    try:
        train.main(config, callbacks=[Probe(probe_dir)])
    finally:
        config.release_run_lock()


if __name__ == "__main__":
    main()
