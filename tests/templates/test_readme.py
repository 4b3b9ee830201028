"""pipeline-templates/README.md documents every input of every template, as the templates say."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.fixtures.local_platform import TEMPLATES
from tests.templates.gitlab_inputs import spec_inputs

TEMPLATE_FILES = sorted((TEMPLATES / "templates").glob("*.yml"))


def _cell(value: object) -> str:
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, list | dict):
        return "`" + yaml.safe_dump(value, default_flow_style=True).strip() + "`"
    if value == "":
        return '`""`'
    return f"`{value}`"


def expected_table(name: str) -> list[str]:
    """The inputs table of template `name`, rendered from its spec."""
    rows = [
        "| input | type | default | rule | description |",
        "|---|---|---|---|---|",
    ]
    for key, declaration in spec_inputs(TEMPLATES / "templates" / f"{name}.yml").items():
        default = _cell(declaration["default"]) if "default" in declaration else "*(required)*"
        rule = ""
        if "regex" in declaration:
            rule = f"regex `{declaration['regex']}`"
        if "options" in declaration:
            rule = "one of " + ", ".join(f"`{option}`" for option in declaration["options"])
        cells = [f"`{key}`", declaration.get("type", "string"), default, rule]
        cells.append(declaration["description"])
        rows.append("| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |")
    return rows


def readme_table(name: str) -> list[str]:
    text = (TEMPLATES / "README.md").read_text()
    match = re.search(rf"^#### `{re.escape(name)}` inputs\n\n((?:\|.*\n)+)", text, re.MULTILINE)
    assert match, f"README.md has no inputs table for `{name}`"
    return match.group(1).splitlines()


@pytest.mark.parametrize("template", TEMPLATE_FILES, ids=[t.stem for t in TEMPLATE_FILES])
def test_readme_inputs_table_matches_the_template(template) -> None:
    expected = expected_table(template.stem)
    assert readme_table(template.stem) == expected, "expected table:\n" + "\n".join(expected)


def test_the_check_notices_a_drift() -> None:
    table = expected_table("train")
    drifted = [row.replace("`train`", "`training`") for row in table]
    assert drifted != table


def test_the_readme_states_the_minimum_gitlab_version() -> None:
    """`spec:description` needs GitLab 18.10; an older GitLab refuses every template."""
    text = (TEMPLATES / "README.md").read_text()
    assert "**GitLab 18.10 or later.**" in text
    assert all(
        "description" in yaml.safe_load_all(t.read_text()).__next__()["spec"]
        for t in TEMPLATE_FILES
    ), "the reason is still there"
