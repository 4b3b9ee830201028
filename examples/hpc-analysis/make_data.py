"""Writes the example's synthetic input: growth measurements of three strains (seeded, so the
same file every time). Run once; the CSV is committed beside it."""

import csv
import random
import sys

rows = []
generator = random.Random(7)  # noqa: S311 - seeded sample data, not a secret
for strain, rate in (("wild-type", 0.42), ("mutant-a", 0.31), ("mutant-b", 0.55)):
    for replicate in range(1, 11):
        rows.append((strain, replicate, round(generator.gauss(rate, 0.03), 4)))

with open(sys.argv[1] if len(sys.argv) > 1 else "data/measurements.csv", "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow(["strain", "replicate", "growth_rate"])
    writer.writerows(rows)
