"""Write scikit-learn's bundled breast-cancer data set as a CSV file, byte for byte reproducible.

The file is this project's input: it is published once to the platform's content-addressed
dataset store (S3) under its sha256, and `datasets.sha256` pins that digest. Floats are written
with Python's shortest round-trip repr, so the same scikit-learn data gives the same bytes.

    python prepare_data.py breast_cancer.csv    # prints the sha256 to put in datasets.sha256
"""

import argparse
import csv
import hashlib
from pathlib import Path

from sklearn.datasets import load_breast_cancer


def write_csv(path: Path) -> str:
    """Write the data set to `path`; returns the file's sha256."""
    data = load_breast_cancer()
    columns = [name.replace(" ", "_") for name in data.feature_names] + ["malignant"]
    with path.open("w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(columns)
        for features, target in zip(data.data, data.target, strict=True):
            # sklearn codes 0 = malignant, 1 = benign; the column says what 1 means.
            writer.writerow([repr(float(x)) for x in features] + [int(target == 0)])
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    args = parser.parse_args()
    print(write_csv(args.output))


if __name__ == "__main__":
    main()
