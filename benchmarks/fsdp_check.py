"""FSDP next to DDP through torchrun: the same config trained for 2 epochs with
trainer.strategy "ddp" and with "fsdp" (plain, bf16 weights with fp32 gradient reduction,
activation checkpointing, CPU offload), side by side: wall time, its ratio to DDP, the final
val_loss and its difference from DDP's; then test.py reads the sharded model_best.dcp and
`python -m utils.convert_checkpoint` turns it into a .pth file. gpu_check.py runs it on every
visible GPU (NCCL); --cpu runs it here with 2 gloo processes (no CPU offload).

    python benchmarks/fsdp_check.py --cpu --train-size 2000
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from benchmarks.overhead import benchmark_config  # noqa: E402
from benchmarks.tiled_mnist import tiled_mnist_dir  # noqa: E402

SHARDED = {"shard_modules": ["Linear", "Conv2d"]}
ARMS = (("ddp", "ddp", None),
        ("fsdp", "fsdp", SHARDED),
        ("fsdp, bf16 weights", "fsdp", {**SHARDED, "param_dtype": "bf16", "reduce_dtype": "fp32"}),
        ("fsdp, activation checkpointing", "fsdp", {**SHARDED, "activation_checkpointing": True}),
        ("fsdp, cpu offload", "fsdp", {**SHARDED, "cpu_offload": True}))


class ArmFailed(Exception):
    pass


def run(command, env, timeout=600):
    result = subprocess.run([sys.executable, *map(str, command)], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            env=env, timeout=timeout)
    if result.returncode != 0:
        print(result.stderr[-3000:], file=sys.stderr)
        lines = [line for line in result.stderr.splitlines() if "Error" in line] or ["no error line"]
        raise ArmFailed(f"exit {result.returncode}: {lines[-1].strip()[:160]}")
    return result


def train_arm(tmp, data_dir, name, strategy, fsdp, nproc, env):
    """Train one arm; returns (seconds, final val_loss, the run's models folder)."""
    save_dir = Path(tmp) / name.replace(" ", "_").replace(",", "")
    config = benchmark_config(data_dir, save_dir, batch_size=128, epochs=2, in_memory=True)
    config["arch"]["args"]["dropout"] = 0.0  # the arms then differ only by rounding
    config["trainer"].update(strategy=strategy, fsdp=fsdp, monitor="min val_loss", tensorboard=False)
    path = save_dir / "config.json"
    save_dir.mkdir(parents=True)
    path.write_text(json.dumps(config))
    start = time.perf_counter()
    run(["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "train.py", "-c", path], env)
    seconds = time.perf_counter() - start
    [run_dir] = (save_dir / "models" / config["name"]).iterdir()
    with (save_dir / "log" / config["name"] / run_dir.name / "metrics.csv").open() as handle:
        val_loss = float(list(csv.DictReader(handle))[-1]["val_loss"])
    return seconds, val_loss, run_dir


def fsdp_table(tmp, nproc, cpu, train_size=60000):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **({"CUDA_VISIBLE_DEVICES": ""} if cpu else {})}
    data_dir = tiled_mnist_dir(Path(tmp) / "data", train_size)
    print(f"\nFSDP and DDP through torchrun, {nproc} processes ({'gloo, CPU' if cpu else 'NCCL, GPU'}), "
          "MnistModel, 2 epochs; wall time includes the launch")
    print("| strategy | wall s | / DDP | val_loss | - DDP's | checkpoint |")
    print("|---|---|---|---|---|---|")
    ddp_seconds = ddp_loss = sharded_run = None
    for name, strategy, fsdp in ARMS:
        if cpu and fsdp and fsdp.get("cpu_offload"):
            continue  # offload moves shards between CPU and GPU memory
        try:
            seconds, val_loss, run_dir = train_arm(tmp, data_dir, name, strategy, fsdp, nproc, env)
        except ArmFailed as failure:  # the other arms still run; the error is printed above
            print(f"| {name} | failed | | | | {failure} |", flush=True)
            continue
        ddp_seconds, ddp_loss = (seconds, val_loss) if strategy == "ddp" else (ddp_seconds, ddp_loss)
        sharded_run = run_dir if name == "fsdp" else sharded_run
        kind = "model_best.dcp/" if (run_dir / "model_best.dcp").is_dir() else "model_best.pth"
        ratio = f"{seconds / ddp_seconds:.2f}" if ddp_seconds else "-"
        difference = f"{val_loss - ddp_loss:+.2e}" if ddp_loss is not None else "-"
        print(f"| {name} | {seconds:.1f} | {ratio} | {val_loss:.6f} | {difference} | {kind} |", flush=True)
    if sharded_run is None:
        return
    best = sharded_run / "model_best.dcp"
    tested = run(["test.py", "-r", best, "--no-report"], env)
    numbers = json.loads((sharded_run / "model_best_test.json").read_text())
    converted = run(["-m", "utils.convert_checkpoint", best], env)
    print(f"test.py -r {best.name}: exit {tested.returncode}, {numbers['samples']} samples, test loss "
          f"{numbers['loss']:.6f}; {converted.stdout.strip()}")


def main():
    parser = argparse.ArgumentParser(description="FSDP next to DDP through torchrun.")
    parser.add_argument("--cpu", action="store_true", help="2 gloo processes on the CPU instead of the GPUs")
    parser.add_argument("--train-size", type=int, default=60000, help="training digits (tiled MNIST)")
    args = parser.parse_args()
    import torch

    nproc = 2 if args.cpu else torch.cuda.device_count()
    with tempfile.TemporaryDirectory(prefix="fsdp-check-") as tmp:
        fsdp_table(tmp, nproc, args.cpu, args.train_size)


if __name__ == "__main__":
    main()
