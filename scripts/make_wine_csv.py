"""Write scikit-learn's wine table (178 wines, 13 chemical measurements, 3 cultivars;
sklearn.datasets.load_wine) as OUT/train.csv and OUT/test.csv (a stratified 75/25 split, fixed
seed), with the target column "cultivar". Usage: python scripts/make_wine_csv.py [OUT] (default
data/wine)."""
import sys
from pathlib import Path

from sklearn.datasets import load_wine
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project folder, also when run as a file

from scripts.example_data import run_writer, write_csv_split  # noqa: E402


def write_wine_csv(out_dir, test_fraction=0.25, seed=0):
    """Write train.csv and test.csv under `out_dir`; return {"train": rows, "test": rows}."""
    table = load_wine(as_frame=True).frame.rename(columns={"target": "cultivar"})
    train, test = train_test_split(table, test_size=test_fraction, stratify=table["cultivar"], random_state=seed)
    return write_csv_split(train, test, out_dir)


def main(argv=None):
    run_writer(__doc__, "data/wine", write_wine_csv, "rows", argv)


if __name__ == "__main__":
    sys.exit(main())
