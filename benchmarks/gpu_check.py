"""Short CUDA check (under 3 minutes on one GPU) for when a device is lent:

1. images/second of a training step for LeNet (1x28x28, batch 128) and torchvision's resnet18
   (3x224x224 random data, batch 64): fp32, then bf16 autocast + channels_last, then those plus
   torch.compile;
2. our Trainer on CUDA with the data kept on the GPU (data_device "cuda"): images/second and the
   host-device syncs it makes in one training epoch, counted by torch's sync debug mode (expected:
   about one per logging step, none per step);
3. FSDP next to DDP through torchrun on every visible GPU (benchmarks/fsdp_check.py): wall time,
   final val_loss and its difference from DDP's for plain FSDP, bf16 weights, activation
   checkpointing and CPU offload; test.py and the .pth conversion read the sharded model_best.dcp;
4. train.py --profile on CUDA with bf16: the model summary it logs and the profiler's time shares
   and top operators by device time.

    python benchmarks/gpu_check.py            # exits with a message where CUDA is missing
"""
import contextlib
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from model.model import MnistModel  # noqa: E402

VARIANTS = (("fp32", False, False), ("bf16 + channels_last", True, False),
            ("bf16 + channels_last + compile", True, True))


def step_rate(make_model, input_shape, batch_size, use_amp, use_compile, steps=30, warmup=5, device="cuda"):
    """Images/second of forward, backward and SGD step on random data already on the GPU."""
    device = torch.device(device)
    model = make_model().to(device)
    data = torch.randn(batch_size, *input_shape, device=device)
    target = torch.randint(0, 10, (batch_size,), device=device)
    if use_amp:
        model = model.to(memory_format=torch.channels_last)
        data = data.contiguous(memory_format=torch.channels_last)
    forward = torch.compile(model) if use_compile else model
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if use_amp else contextlib.nullcontext()

    def step():
        with autocast:
            loss = F.cross_entropy(forward(data).float(), target)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    for _ in range(warmup):  # includes compilation
        step()
    synchronize = torch.cuda.synchronize if device.type == "cuda" else lambda: None
    synchronize()  # time whole steps, not the launch queue
    start = time.perf_counter()
    for _ in range(steps):
        step()
    synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def model_table():
    import torchvision

    models = (("LeNet (MnistModel)", MnistModel, (1, 28, 28), 128),
              ("resnet18", lambda: torchvision.models.resnet18(num_classes=10), (3, 224, 224), 64))
    print("| model | batch | variant | images/s |")
    print("|---|---|---|---|")
    for name, make_model, shape, batch in models:
        for variant, use_amp, use_compile in VARIANTS:
            rate = step_rate(make_model, shape, batch, use_amp, use_compile)
            print(f"| {name} | {batch} | {variant} | {rate:.0f} |", flush=True)


def trainer_check(tmp):
    from benchmarks.overhead import benchmark_config, build_trainer, quiet_console, trainer_epoch
    from benchmarks.tiled_mnist import tiled_mnist_dir

    data_dir = tiled_mnist_dir(Path(tmp) / "data", 60000)
    for amp in (None, "bf16"):
        config = benchmark_config(data_dir, Path(tmp) / "saved", 128, epochs=2, in_memory=True)
        config["data_loader"]["args"]["data_device"] = "cuda"
        config["trainer"].update(amp=amp, channels_last=amp is not None)
        trainer = build_trainer(config, f"gpu-{amp}", device=torch.device("cuda"))
        quiet_console()
        trainer_epoch(trainer, 1)  # warm-up: cuDNN, allocator
        torch.cuda.synchronize()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.cuda.set_sync_debug_mode("warn")
            start = time.perf_counter()
            trainer._train_epoch(2)
            seconds = time.perf_counter() - start
            torch.cuda.set_sync_debug_mode("default")
        trainer.writer.close()
        syncs = sum("synchroniz" in str(w.message) for w in caught)
        steps = len(trainer.data_loader)
        print(f"Trainer, amp={amp}: {steps * 128 / seconds:.0f} images/s (training epoch with validation); "
              f"{syncs} host-device syncs for {steps} steps, log_step {trainer.log_step}")


def profile_check(tmp):
    """train.py as a user runs it, with --profile: what info.log and profile/ show on CUDA."""
    import json
    import subprocess

    from benchmarks.overhead import benchmark_config
    from benchmarks.tiled_mnist import tiled_mnist_dir

    config = benchmark_config(tiled_mnist_dir(Path(tmp) / "data", 20000), Path(tmp) / "saved-profile", 128,
                              epochs=1, in_memory=True)
    config["trainer"].update(amp="bf16", channels_last=True)
    config_path = Path(tmp) / "profile_config.json"
    config_path.write_text(json.dumps(config))
    done = subprocess.run([sys.executable, "train.py", "-c", str(config_path), "--profile", "20"], cwd=PROJECT_ROOT,
                          capture_output=True, text=True, timeout=300)
    print(f"train.py --profile 20 (bf16, channels_last): exit {done.returncode}")
    if done.returncode:
        print(done.stderr[-3000:])
        return
    info_log = next((Path(tmp) / "saved-profile").rglob("info.log"))
    summary = [line for line in info_log.read_text().splitlines()
               if any(f"INFO -     {word}" in line for word in ("parameters:", "forward:", "memory:"))]
    print("\n".join(summary[:8]))
    top = next((Path(tmp) / "saved-profile").rglob("top_operators.txt"))
    print(top.read_text()[:2500])


def main():
    if not torch.cuda.is_available():
        print("gpu_check: CUDA is not available on this machine; nothing to measure. Run it on a GPU "
              "machine: python benchmarks/gpu_check.py")
        return
    print(f"torch {torch.__version__}, {torch.cuda.get_device_name()}")
    model_table()
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        trainer_check(tmp)
        from benchmarks.fsdp_check import fsdp_table

        profile_check(tmp)
        fsdp_table(tmp, torch.cuda.device_count(), cpu=False, train_size=20000)


if __name__ == "__main__":
    main()
