"""Write scikit-learn's 1,797 real 8x8 handwritten digits (sklearn.datasets.load_digits) as PNG
files in one folder per class: OUT/train/<digit>/*.png and OUT/test/<digit>/*.png (a stratified
80/20 split, fixed seed). Usage: python scripts/make_digits_folder.py [OUT] (default data/digits)."""
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project folder, also when run as a file

from scripts.example_data import run_writer  # noqa: E402


def write_digits_folder(out_dir, test_fraction=0.2, seed=0, per_class=None):
    """Write the PNG tree under `out_dir` (at most `per_class` images per class and split when
    given); return {"train": count, "test": count}."""
    digits = load_digits()
    pixels = np.round(digits.images * (255 / 16)).astype(np.uint8)  # 0..16 grey levels -> 0..255
    indices = np.arange(len(pixels))
    train_idx, test_idx = train_test_split(indices, test_size=test_fraction, stratify=digits.target,
                                           random_state=seed)
    counts = {}
    for split, chosen in (("train", train_idx), ("test", test_idx)):
        if per_class is not None:
            chosen = np.concatenate([chosen[digits.target[chosen] == d][:per_class] for d in range(10)])
        for index in chosen:
            folder = Path(out_dir) / split / str(digits.target[index])
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels[index], mode="L").save(folder / f"{index:04d}.png")
        counts[split] = len(chosen)
    return counts


def main(argv=None):
    run_writer(__doc__, "data/digits", write_digits_folder, "digits", argv)


if __name__ == "__main__":
    sys.exit(main())
