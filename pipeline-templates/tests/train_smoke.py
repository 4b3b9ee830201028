"""The component tests' training command: a tiny model on tests/data/sample.csv, logged to the
MLflow run the `train` component opened, so that `register-model` has a model to register."""

import csv
import sys

import mlflow
import mlflow.sklearn
from sklearn.linear_model import LogisticRegression


def main(path: str) -> None:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    features = [[float(row["x1"]), float(row["x2"])] for row in rows]
    labels = [int(row["label"]) for row in rows]
    model = LogisticRegression().fit(features, labels)
    with mlflow.start_run():
        mlflow.log_param("rows", len(rows))
        mlflow.log_metric("train_accuracy", model.score(features, labels))
        mlflow.sklearn.log_model(model, name="model")


if __name__ == "__main__":
    main(sys.argv[1])
