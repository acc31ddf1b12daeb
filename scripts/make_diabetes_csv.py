"""Write scikit-learn's diabetes table (442 patients, 10 baseline measurements in their original
units, and "progression", a measure of disease progression one year later;
sklearn.datasets.load_diabetes) as OUT/train.csv and OUT/test.csv (an 80/20 split, fixed seed).
Usage: python scripts/make_diabetes_csv.py [OUT] (default data/diabetes)."""
import argparse
import sys
from pathlib import Path

from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split


def write_diabetes_csv(out_dir, test_fraction=0.2, seed=42):
    """Write train.csv and test.csv under `out_dir`; return {"train": rows, "test": rows}."""
    table = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    train, test = train_test_split(table, test_size=test_fraction, random_state=seed)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    train.to_csv(Path(out_dir) / "train.csv", index=False)
    test.to_csv(Path(out_dir) / "test.csv", index=False)
    return {"train": len(train), "test": len(test)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", nargs="?", default="data/diabetes")
    args = parser.parse_args(argv)
    counts = write_diabetes_csv(args.out)
    print(f"wrote {counts['train']} training and {counts['test']} test rows to {args.out}")


if __name__ == "__main__":
    sys.exit(main())
