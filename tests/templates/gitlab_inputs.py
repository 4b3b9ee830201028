"""GitLab's rules for the inputs of an `include:` entry, as GitLab applies them (not as
gitlab-ci-local does: it accepts inputs the component does not declare, GitLab refuses them).

Source: GitLab's CI/CD inputs documentation (gitlab-contracts.md section 3.1): every given input
must be declared in the component's `spec:inputs`; an input without `default` is mandatory;
`type` is string (the default), number, boolean or array; `options` and `regex` constrain the
value.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

TYPES = {
    "string": lambda v: isinstance(v, str),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
}


def spec_inputs(template: Path) -> dict[str, dict[str, Any]]:
    """The `spec:inputs` of a component file (its first YAML document)."""
    header = next(yaml.safe_load_all(template.read_text()))
    return header["spec"]["inputs"]


def input_errors(spec: dict[str, dict[str, Any]], given: dict[str, Any]) -> list[str]:
    """GitLab's complaints about `given` for a component with `spec`; empty when valid."""
    errors = [f"unknown input arguments: `{name}`" for name in given if name not in spec]
    for name, declaration in spec.items():
        if name not in given and "default" not in declaration:
            errors.append(f"`{name}` input: required value has not been provided")
            continue
        value = given.get(name, declaration.get("default"))
        kind = declaration.get("type", "string")
        if not TYPES[kind](value):
            errors.append(f"`{name}` input: provided value is not a {kind}")
            continue
        if "options" in declaration and value not in declaration["options"]:
            errors.append(f"`{name}` input: `{value}` cannot be used because it is not in the list")
        if "regex" in declaration and not re.search(declaration["regex"], str(value)):
            errors.append(f"`{name}` input: `{value}` does not match required regex")
    return errors
