"""What the example-data scripts share: their command line (one optional output folder) and
writing a table's train/test split as two CSV files."""
import argparse
from pathlib import Path


def write_csv_split(train, test, out_dir):
    """Write the two pandas tables as OUT/train.csv and OUT/test.csv; return {"train": rows, "test": rows}."""
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    train.to_csv(Path(out_dir) / "train.csv", index=False)
    test.to_csv(Path(out_dir) / "test.csv", index=False)
    return {"train": len(train), "test": len(test)}


def run_writer(description, default_out, write, unit, argv=None):
    """Parse [OUT] (default `default_out`), call write(OUT) and print the counts it returns."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("out", nargs="?", default=default_out)
    args = parser.parse_args(argv)
    counts = write(args.out)
    print(f"wrote {counts['train']} training and {counts['test']} test {unit} to {args.out}")
