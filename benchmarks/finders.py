"""Wall time of the two finders on a config (default: the project's config.json), measured in
one process after the imports, plus the time the imports took, as `tune.py` pays both.

    python benchmarks/finders.py                  # the default config, as `tune.py --lr-find` runs it
    python benchmarks/finders.py -c config.json --lr-steps 100 --bs-steps 3
"""
import argparse
import json
import sys
import time
from pathlib import Path

started = time.perf_counter()
PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

import torch  # noqa: E402

from parse_config import ConfigParser  # noqa: E402
from tuning.finder_commands import batch_size_find, lr_find  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", default=str(PROJECT_ROOT / "config.json"))
    parser.add_argument("--lr-steps", type=int, default=100)
    parser.add_argument("--bs-steps", type=int, default=3)
    parser.add_argument("--out", default=None, help="folder for the LR plot (default: a temporary one)")
    args = parser.parse_args()
    config = ConfigParser(json.loads(Path(args.config).read_text()), create_dirs=False)
    out = args.out or Path(__import__("tempfile").mkdtemp(prefix="lr_find_"))

    start, cpu_start = time.perf_counter(), time.process_time()
    lr, png, _ = lr_find(config, num_steps=args.lr_steps, out_dir=out)
    lr_seconds, lr_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    start, cpu_start = time.perf_counter(), time.process_time()
    size, trials, _ = batch_size_find(config, steps=args.bs_steps)
    bs_seconds, bs_cpu = time.perf_counter() - start, time.process_time() - cpu_start

    print(f"torch threads: {torch.get_num_threads()}; imports: {IMPORT_SECONDS:.1f} s")
    print("| finder | result | wall time (s) | process CPU time (s) | wall with imports (s) |")
    print("|---|---|---|---|---|")
    print(f"| --lr-find ({args.lr_steps} steps) | lr {lr:.3g} | {lr_seconds:.1f} | {lr_cpu:.1f} | "
          f"{lr_seconds + IMPORT_SECONDS:.1f} |")
    print(f"| --find-batch-size ({len(trials)} sizes x {args.bs_steps} steps) | batch size {size} | "
          f"{bs_seconds:.1f} | {bs_cpu:.1f} | {bs_seconds + IMPORT_SECONDS:.1f} |")
    print(f"plot: {png}")


if __name__ == "__main__":
    main()
