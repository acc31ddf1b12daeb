"""Whole processes, timed from the outside: `python train.py -c CONFIG` against the hand-written
script (benchmarks/plain_script.py) on the same data and epochs, and the start-up of the
command-line programs against `python -c "import torch, torchvision"`. Every comparison runs in
alternating order (A B, B A, ...), and medians are reported, because the machine may be shared."""
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
STARTUP_COMMANDS = {
    'python -c "import torch, torchvision"': ["-c", "import torch, torchvision"],
    "python train.py --help": ["train.py", "--help"],
    "python test.py --help": ["test.py", "--help"],
    "python predict.py --help": ["predict.py", "--help"],
}


def timed_process(args, threads):
    """(wall s, CPU s of the child) of `python ARGS` run in the project folder; raises with the
    child's error output when it fails."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONDONTWRITEBYTECODE": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryFile() as errors:
        start = time.perf_counter()
        result = subprocess.run([sys.executable, *map(str, args)], cwd=PROJECT_ROOT, env=env,
                                stdout=subprocess.DEVNULL, stderr=errors)
        wall = time.perf_counter() - start
        if result.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"python {' '.join(map(str, args))} exited {result.returncode}:\n"
                               f"{errors.read().decode(errors='replace')}")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)


def alternating(commands, rounds, threads, after_each=None):
    """{name: [(wall, cpu) per round]}; the order of the commands rotates every round."""
    times = {name: [] for name in commands}
    names = list(commands)
    for round_number in range(rounds):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(timed_process(commands[name], threads))
            if after_each is not None:
                after_each(name)
    return times


def median(values):
    return statistics.median(values)


def load_average():
    return "load average " + ", ".join(f"{value:.2f}" for value in os.getloadavg())


def whole_process_table(config, data_dir, work_dir, pairs, threads):
    """train.py on `config` against plain_script.py on the same data, batch size, seed and epochs."""
    work_dir = Path(work_dir)
    config_file = work_dir / "process_config.json"
    config_file.write_text(json.dumps(config, indent=2))
    save_dir, plain_dir = Path(config["trainer"]["save_dir"]), work_dir / "plain"
    epochs, batch_size = config["trainer"]["epochs"], config["data_loader"]["args"]["batch_size"]
    commands = {
        "hand-written script": ["benchmarks/plain_script.py", "--data-dir", data_dir, "--save-dir", plain_dir,
                                "--epochs", epochs, "--batch-size", batch_size, "--seed", config["seed"]],
        "python train.py -c CONFIG": ["train.py", "-c", config_file],
    }

    def clean(_name):  # each run starts from an empty output folder
        for folder in (save_dir, plain_dir):
            shutil.rmtree(folder, ignore_errors=True)

    print(f"\n## Whole process: {epochs} epochs, batch {batch_size}, validation and a checkpoint each epoch, "
          f"{threads} torch thread(s), {pairs} alternating pairs "
          f"({load_average()} before)")
    times = alternating(commands, pairs, threads, after_each=clean)
    print_process_times(times)
    framework, plain = times["python train.py -c CONFIG"], times["hand-written script"]
    for clock, label in ((0, "wall time"), (1, "CPU time ")):
        of_medians = median(t[clock] for t in framework) / median(t[clock] for t in plain)
        paired = median(f[clock] / p[clock] for f, p in zip(framework, plain))
        print(f"train.py / hand-written script, {label}: {of_medians:.3f}x (ratio of medians), "
              f"{paired:.3f}x (median of paired ratios)")
    print(f"({load_average()} after)")


def print_process_times(times):
    print("| process | median wall (s) | median CPU (s) | wall per run (s) |")
    print("|---|---|---|---|")
    for name, runs in times.items():
        print(f"| {name} | {median(t[0] for t in runs):.2f} | {median(t[1] for t in runs):.2f} | "
              f"{' '.join(f'{t[0]:.1f}' for t in runs)} |")


def startup_table(rounds, threads):
    """The command-line programs' --help against importing torch and torchvision."""
    print(f"\n## Start-up: {rounds} alternating rounds ({load_average()} before)")
    times = alternating(STARTUP_COMMANDS, rounds, threads)
    baseline = median(t[0] for t in times[next(iter(STARTUP_COMMANDS))])
    print("| command | median wall (s) | median CPU (s) | / import torch, torchvision (wall) |")
    print("|---|---|---|---|")
    for name, runs in times.items():
        wall = median(t[0] for t in runs)
        print(f"| {name} | {wall:.2f} | {median(t[1] for t in runs):.2f} | {wall / baseline:.2f}x |")
    print(f"({load_average()} after)")
