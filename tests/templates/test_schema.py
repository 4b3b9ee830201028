"""Every template, and the example, against GitLab's CI JSON schema (the copy vendored by the
pinned check-jsonschema, `vendor.gitlab-ci`): gitlab-ci-local accepts configurations GitLab
refuses (a header with an unknown `spec:` key, a catalog description over 256 characters).

A component is checked twice, as GitLab reads it: its header (`spec:`), and its body after the
inputs are substituted. Substitution follows GitLab's documented rule (gitlab-contracts.md 3.1):
an interpolation that is the whole YAML value keeps the input's type; inside a longer string it
becomes text.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.local_platform import IMAGE, REPO, TEMPLATE_VERSION, TEMPLATES

CHECK_JSONSCHEMA = REPO / ".venv" / "bin" / "check-jsonschema"
TEMPLATE_FILES = sorted((TEMPLATES / "templates").glob("*.yml"))
EXAMPLE = REPO / "examples" / "breast-cancer" / ".gitlab-ci.yml"
COMPONENT = {"name": "", "version": TEMPLATE_VERSION, "sha": "a" * 40, "reference": "1"}
# Values for the inputs a template requires (no default): the example's, where it gives them.
REQUIRED = {
    "image": IMAGE,
    "command": "python train.py",
    "store": "s3://datasets/sha256",
    "model_name": "breast-cancer-classifier",
    "metric": "test_roc_auc",
    "threshold": 0.95,
    "environment": "python-ml",
    "login_host": "$SLURM_LOGIN_HOST",
    "login_user": "$SLURM_USER",
    "remote_root": "~/ci",
}
WHOLE = re.compile(r"^\$\[\[\s*(inputs|component)\.(\w+)\s*\]\]$")
PART = re.compile(r"\$\[\[\s*(inputs|component)\.(\w+)\s*\]\]")


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def substitute(node: Any, values: dict[str, dict[str, Any]]) -> Any:
    """The body as GitLab compiles it, for the given `inputs` and `component` values."""
    if isinstance(node, dict):
        return {substitute(k, values): substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(item, values) for item in node]
    if isinstance(node, str):
        whole = WHOLE.match(node)
        if whole:
            return values[whole.group(1)][whole.group(2)]
        return PART.sub(lambda m: _text(values[m.group(1)][m.group(2)]), node)
    return node


def compiled(template: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    header, body = yaml.safe_load_all(template.read_text())
    inputs = {
        name: declaration["default"] if "default" in declaration else REQUIRED[name]
        for name, declaration in header["spec"]["inputs"].items()
    }
    values = {"inputs": inputs, "component": {**COMPONENT, "name": template.stem}}
    return header, substitute(body, values)


def schema_errors(documents: dict[str, Any], tmp_path: Path) -> str:
    """check-jsonschema's complaints about each document (named by its key); empty if none."""
    files = []
    for name, document in documents.items():
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(document))
        files.append(str(path))
    done = subprocess.run(
        [str(CHECK_JSONSCHEMA), "--builtin-schema", "vendor.gitlab-ci", *files],
        capture_output=True,
        text=True,
        check=False,
    )
    return "" if done.returncode == 0 else done.stdout + done.stderr


def test_every_header_and_compiled_body_is_valid_gitlab_ci(tmp_path: Path) -> None:
    documents = {}
    for template in TEMPLATE_FILES:
        header, body = compiled(template)
        assert "$[[" not in json.dumps(body), f"{template.stem}: an interpolation is left"
        documents[f"{template.stem}-header"] = header
        documents[f"{template.stem}-body"] = body
    assert schema_errors(documents, tmp_path) == ""


def test_the_example_and_the_component_project_pipeline_are_valid(tmp_path: Path) -> None:
    documents = {
        "example": yaml.safe_load(EXAMPLE.read_text()),
        "component-project": yaml.safe_load((TEMPLATES / ".gitlab-ci.yml").read_text()),
    }
    assert schema_errors(documents, tmp_path) == ""


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda h: h["spec"].update(bogus_key=1), "'bogus_key' was unexpected"),
        (lambda h: h["spec"].update(description="x" * 257), "is too long"),
        (lambda h: h["spec"].update(component=["name", "tag"]), "'tag' is not one of"),
    ],
    ids=["unknown spec key", "long description", "unknown component field"],
)
def test_a_header_gitlab_refuses_is_caught(change, complaint: str, tmp_path: Path) -> None:
    header, _ = compiled(TEMPLATES / "templates" / "train.yml")
    change(header)
    assert complaint in schema_errors({"train-header": header}, tmp_path)


def test_a_body_gitlab_refuses_is_caught(tmp_path: Path) -> None:
    _, body = compiled(TEMPLATES / "templates" / "train.yml")
    (job,) = body.values()
    job["when"] = "sometimes"
    assert "train-body" in schema_errors({"train-body": body}, tmp_path)
