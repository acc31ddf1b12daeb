"""Write scikit-learn's diabetes table (442 patients, 10 baseline measurements in their original
units, and "progression", a measure of disease progression one year later;
sklearn.datasets.load_diabetes) as OUT/train.csv and OUT/test.csv (an 80/20 split, fixed seed).
Usage: python scripts/make_diabetes_csv.py [OUT] (default data/diabetes)."""
import sys
from pathlib import Path

from sklearn.datasets import load_diabetes
from sklearn.model_selection import train_test_split

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project folder, also when run as a file

from scripts.example_data import run_writer, write_csv_split  # noqa: E402


def write_diabetes_csv(out_dir, test_fraction=0.2, seed=42):
    """Write train.csv and test.csv under `out_dir`; return {"train": rows, "test": rows}."""
    table = load_diabetes(as_frame=True, scaled=False).frame.rename(columns={"target": "progression"})
    train, test = train_test_split(table, test_size=test_fraction, random_state=seed)
    return write_csv_split(train, test, out_dir)


def main(argv=None):
    run_writer(__doc__, "data/diabetes", write_diabetes_csv, "rows", argv)


if __name__ == "__main__":
    sys.exit(main())
