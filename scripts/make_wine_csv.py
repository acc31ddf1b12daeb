"""Write scikit-learn's wine table (178 wines, 13 chemical measurements, 3 cultivars;
sklearn.datasets.load_wine) as OUT/train.csv and OUT/test.csv (a stratified 75/25 split, fixed
seed), with the target column "cultivar". Usage: python scripts/make_wine_csv.py [OUT] (default
data/wine)."""
import argparse
import sys
from pathlib import Path

from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split


def write_wine_csv(out_dir, test_fraction=0.25, seed=0):
    """Write train.csv and test.csv under `out_dir`; return {"train": rows, "test": rows}."""
    table = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    train, test = train_test_split(table, test_size=test_fraction, stratify=table["cultivar"], random_state=seed)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    train.to_csv(Path(out_dir) / "train.csv", index=False)
    test.to_csv(Path(out_dir) / "test.csv", index=False)
    return {"train": len(train), "test": len(test)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", nargs="?", default="data/wine")
    args = parser.parse_args(argv)
    counts = write_wine_csv(args.out)
    print(f"wrote {counts['train']} training and {counts['test']} test rows to {args.out}")


if __name__ == "__main__":
    sys.exit(main())
