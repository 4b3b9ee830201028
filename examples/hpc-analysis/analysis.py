"""The analysis the cluster runs: per-strain growth statistics of the staged measurements.

Standard library only, so it runs with the cluster's python3 (or inside the Apptainer image
the pipeline names). Writes `results/summary.json` (staged back as a CI artifact) and
`mlflow.json` (params and metrics the `slurm-job` component logs to MLflow).
"""

import argparse
import csv
import json
import os
import statistics
from collections import defaultdict

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("measurements")
parser.add_argument("results")
args = parser.parse_args()

by_strain = defaultdict(list)
with open(args.measurements, newline="") as f:
    for row in csv.DictReader(f):
        by_strain[row["strain"]].append(float(row["growth_rate"]))
print(f"read {sum(map(len, by_strain.values()))} measurements of {len(by_strain)} strains")

summary = {
    strain: {
        "n": len(values),
        "mean": round(statistics.mean(values), 6),
        "stdev": round(statistics.stdev(values), 6),
    }
    for strain, values in sorted(by_strain.items())
}
for strain, stats in summary.items():
    print(f"{strain:>10}: mean {stats['mean']:.4f}  sd {stats['stdev']:.4f}  (n={stats['n']})")

os.makedirs(args.results, exist_ok=True)
with open(os.path.join(args.results, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
fastest = max(summary, key=lambda s: summary[s]["mean"])
with open("mlflow.json", "w") as f:
    json.dump(
        {
            "params": {"strains": len(summary), "fastest_strain": fastest},
            "metrics": {
                f"mean_growth_{strain.replace('-', '_')}": stats["mean"]
                for strain, stats in summary.items()
            },
        },
        f,
    )
print(f"fastest strain: {fastest}")
