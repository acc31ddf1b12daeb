"""Whole processes, timed from the outside: `python train.py -c CONFIG` against the hand-written
script (benchmarks/plain_script.py) on the same data and epochs, and the start-up of the
command-line programs against `python -c "import torch, torchvision"`. Every comparison runs in
alternating order (A B, B A, ...) after one untimed run of each command, and medians are
reported, because the machine may be shared. With `baseline`, another checkout of the project
(e.g. `git worktree add ../before main`) runs the same commands as further arms."""
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
IMPORT_TORCH = 'python -c "import torch, torchvision"'


def timed_process(command, threads):
    """(wall s, CPU s of the child) of `command` = (folder, python arguments); raises with the
    child's error output when it fails."""
    folder, args = command
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # the project's modules compiled once and cached, as for a user
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        result = subprocess.run([sys.executable, *map(str, args)], cwd=folder, env=env,
                                stdout=subprocess.DEVNULL, stderr=errors)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"python {' '.join(map(str, args))} (in {folder}) exited {result.returncode}:\n"
                               f"{errors.read().decode(errors='replace')}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def alternating(commands, rounds, threads, after_each=None):
    """{name: [(wall, cpu) per round]} of {name: command}; one untimed run of each first, then
    the order of the commands rotates every round."""
    times = {name: [] for name in commands}
    names = list(commands)
    for round_number in range(-1, rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            measured = timed_process(commands[name], threads)
            if round_number >= 0:
                times[name].append(measured)
            if after_each is not None:
                after_each(name)
    return times


def median(values):
    return statistics.median(values)


def load_average():
    return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def checkouts(baseline):
    """{label suffix: project folder}: this checkout, and `baseline` when given."""
    return {"": PROJECT_ROOT, **({f" ({Path(baseline).name})": Path(baseline).resolve()} if baseline else {})}


def whole_process_table(config, data_dir, work_dir, pairs, threads, baseline=None):
    """train.py on `config` against plain_script.py on the same data, batch size, seed and epochs."""
    work_dir = Path(work_dir)
    config_file = work_dir / "process_config.json"
    config_file.write_text(json.dumps(config, indent=2))
    save_dir, plain_dir = Path(config["trainer"]["save_dir"]), work_dir / "plain"
    epochs, batch_size = config["trainer"]["epochs"], config["data_loader"]["args"]["batch_size"]
    plain = "hand-written script"
    commands = {plain: (PROJECT_ROOT, ["benchmarks/plain_script.py", "--data-dir", data_dir, "--save-dir", plain_dir,
                                       "--epochs", epochs, "--batch-size", batch_size, "--seed", config["seed"]])}
    for suffix, folder in checkouts(baseline).items():
        commands[f"python train.py -c CONFIG{suffix}"] = (folder, ["train.py", "-c", config_file])

    def clean(_name):  # each run starts from an empty output folder
        for folder in (save_dir, plain_dir):
            shutil.rmtree(folder, ignore_errors=True)

    print(f"\n## Whole process: {epochs} epochs, batch {batch_size}, validation and a checkpoint each epoch, "
          f"{threads} torch thread(s), {pairs} alternating rounds after one untimed run each ({load_average()} before)")
    times = alternating(commands, pairs, threads, after_each=clean)
    print_times(times, "process")
    for name in list(commands)[1:]:
        for clock, label in ((0, "wall time"), (1, "CPU time ")):
            print(f"{name} / {plain}, {label}: {ratios(times[name], times[plain], clock)}")
    print(f"({load_average()} after)")


def ratios(slow, fast, clock):
    of_medians = median(t[clock] for t in slow) / median(t[clock] for t in fast)
    paired = median(s[clock] / f[clock] for s, f in zip(slow, fast))
    return f"{of_medians:.3f}x (ratio of medians), {paired:.3f}x (median of paired ratios)"


def print_times(times, label):
    print(f"| {label} | median wall (s) | median CPU (s) | wall per run (s) | CPU per run (s) |")
    print("|---|---|---|---|---|")
    for name, runs in times.items():
        print(f"| {name} | {median(t[0] for t in runs):.2f} | {median(t[1] for t in runs):.2f} | "
              f"{' '.join(f'{t[0]:.1f}' for t in runs)} | {' '.join(f'{t[1]:.1f}' for t in runs)} |")


def startup_commands(checkpoint, image, baseline=None):
    """--help of the three programs, and test.py / predict.py doing a little real work."""
    commands = {IMPORT_TORCH: (PROJECT_ROOT, ["-c", "import torch, torchvision"])}
    for suffix, folder in checkouts(baseline).items():
        commands.update({
            f"python train.py --help{suffix}": (folder, ["train.py", "--help"]),
            f"python test.py --help{suffix}": (folder, ["test.py", "--help"]),
            f"python predict.py --help{suffix}": (folder, ["predict.py", "--help"]),
            f"python test.py -r CHECKPOINT --no-report{suffix}": (folder, ["test.py", "-r", checkpoint, "--no-report"]),
            f"python predict.py -r CHECKPOINT -i ONE.png{suffix}":
                (folder, ["predict.py", "-r", checkpoint, "-i", image, "-o", Path(image).with_suffix(".csv")]),
        })
    return commands


def startup_table(config, work_dir, rounds, threads, baseline=None):
    """The command-line programs against importing torch and torchvision. test.py evaluates (and
    predict.py labels one image with) the checkpoint of a one-epoch run of `config`."""
    checkpoint, image = startup_inputs(config, Path(work_dir), threads)
    print(f"\n## Start-up: {rounds} alternating rounds after one untimed run each ({load_average()} before)")
    times = alternating(startup_commands(checkpoint, image, baseline), rounds, threads)
    floor = median(t[0] for t in times[IMPORT_TORCH])
    print(f"| command | median wall (s) | median CPU (s) | / {IMPORT_TORCH} (wall) |")
    print("|---|---|---|---|")
    for name, runs in times.items():
        wall = median(t[0] for t in runs)
        print(f"| {name} | {wall:.2f} | {median(t[1] for t in runs):.2f} | {wall / floor:.2f}x |")
    print(f"({load_average()} after)")


def startup_inputs(config, work_dir, threads):
    """(checkpoint of a one-epoch run on 1000 images, one test digit as a PNG)."""
    from PIL import Image
    from torchvision.datasets import MNIST

    config = json.loads(json.dumps(config))
    config["trainer"].update(epochs=1, save_dir=str(work_dir / "startup"))
    config["data_loader"]["args"]["limit"] = 1000
    config_file = work_dir / "startup_config.json"
    config_file.write_text(json.dumps(config, indent=2))
    timed_process((PROJECT_ROOT, ["train.py", "-c", config_file]), threads)
    (checkpoint,) = (work_dir / "startup").glob("models/*/*/checkpoint-epoch1.pth")
    image = work_dir / "digit.png"
    Image.fromarray(MNIST(config["data_loader"]["args"]["data_dir"], train=False).data[0].numpy()).save(image)
    return checkpoint, image
