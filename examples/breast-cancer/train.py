"""Breast-cancer diagnosis from cell-nucleus measurements: a regularised logistic regression.

Reads the CSV that the `dataset` job fetched and verified, holds out a stratified test split,
estimates generalisation by stratified cross-validation on the rest, fits on the whole training
split and reports held-out metrics. Everything is seeded: the same data, parameters and
environment image give the same numbers, which is what the platform's rerun check relies on.
Logs to the MLflow run that the `train` template opened (`mlflow.start_run()` resumes it).
"""

import argparse
import csv
import importlib.metadata
from pathlib import Path

import mlflow
import mlflow.sklearn
import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)
from sklearn.model_selection import StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def load(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    values = np.array(body, dtype=float)
    return values[:, :-1], values[:, -1].astype(int), header[:-1]


def requirements() -> list[str]:
    """What loading the model needs, at the versions that ran (MLflow adds itself). Without
    them MLflow infers the list by loading the model in a subprocess: about 9 s more per run,
    and it also picks up unrelated packages the job happened to have imported."""
    return [
        f"{name}=={importlib.metadata.version(name)}"
        for name in ("scikit-learn", "skops", "numpy", "scipy")
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("data/breast_cancer.csv"))
    parser.add_argument("--C", type=float, default=1.0, help="inverse regularisation strength")
    parser.add_argument("--test-size", type=float, default=0.25)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    features, target, names = load(args.data)
    x_train, x_test, y_train, y_test = train_test_split(
        features, target, test_size=args.test_size, stratify=target, random_state=args.seed
    )
    model = make_pipeline(StandardScaler(), LogisticRegression(C=args.C, max_iter=5000))
    folds = StratifiedKFold(n_splits=args.folds, shuffle=True, random_state=args.seed)

    with mlflow.start_run():
        mlflow.log_params(
            {
                "C": args.C,
                "test_size": args.test_size,
                "folds": args.folds,
                "seed": args.seed,
                "model": "StandardScaler+LogisticRegression",
                "n_samples": len(target),
                "n_features": features.shape[1],
            }
        )
        cv_auc = cross_val_score(model, x_train, y_train, cv=folds, scoring="roc_auc")
        model.fit(x_train, y_train)
        probability = model.predict_proba(x_test)[:, 1]
        predicted = (probability >= 0.5).astype(int)
        metrics = {
            "cv_roc_auc_mean": float(cv_auc.mean()),
            "cv_roc_auc_std": float(cv_auc.std()),
            "test_roc_auc": roc_auc_score(y_test, probability),
            "test_accuracy": accuracy_score(y_test, predicted),
            "test_precision": precision_score(y_test, predicted),
            "test_recall": recall_score(y_test, predicted),
            "test_f1": f1_score(y_test, predicted),
        }
        mlflow.log_metrics(metrics)
        coefficients = model[-1].coef_[0]
        strongest = np.argsort(-np.abs(coefficients))[:10]
        mlflow.log_dict(
            {
                "confusion_matrix": confusion_matrix(y_test, predicted).tolist(),
                "labels": ["benign", "malignant"],
                "strongest_coefficients": {names[i]: float(coefficients[i]) for i in strongest},
            },
            "evaluation.json",
        )
        mlflow.sklearn.log_model(
            model, name="model", input_example=x_test[:3], pip_requirements=requirements()
        )
        for name, value in metrics.items():
            print(f"{name:>16} {value:.4f}")


if __name__ == "__main__":
    main()
