"""One semantic version for all templates, written down everywhere it must agree."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml

from tests.fixtures.local_platform import REPO, TEMPLATE_VERSION, TEMPLATES

TEMPLATE_FILES = sorted((TEMPLATES / "templates").glob("*.yml"))
SEMVER = r"(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?"


def test_version_is_semantic() -> None:
    assert re.fullmatch(SEMVER, TEMPLATE_VERSION)


def test_the_changelog_describes_the_version() -> None:
    changelog = (TEMPLATES / "CHANGELOG.md").read_text()
    assert re.search(
        rf"^## \[{re.escape(TEMPLATE_VERSION)}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, re.M
    )


@pytest.mark.parametrize("template", TEMPLATE_FILES, ids=[t.stem for t in TEMPLATE_FILES])
def test_each_template_is_one_job_with_no_version_of_its_own(template) -> None:
    """The version is what GitLab resolved for the include (`$[[ component.* ]]`), never a
    literal or a variable that would say 1.0.0 for `@main` or be shadowed by a project."""
    text = template.read_text()
    header, body = yaml.safe_load_all(text)
    assert set(header) == {"spec"}
    (job,) = body.values()  # one job per component, and no global keyword
    assert list(body) == ["$[[ inputs.job_name ]]"]
    assert TEMPLATE_VERSION not in text
    assert not any(name.startswith("PLATFORM_TEMPLATE") for name in job.get("variables", {}))
    used = set(re.findall(r"\$\[\[\s*component\.(\w+)\s*\]\]", text))
    assert used <= set(header["spec"].get("component", [])), "declared in spec:component"
    for keyword in ("stage", "image", "rules"):
        assert "$[[ inputs." in str(job[keyword]), f"{keyword} must be an input"


def test_the_example_includes_the_components_by_this_version() -> None:
    config = yaml.safe_load((REPO / "examples" / "breast-cancer" / ".gitlab-ci.yml").read_text())
    components = [entry["component"] for entry in config["include"]]
    assert components
    for component in components:
        assert component.startswith("$CI_SERVER_FQDN/platform/pipeline-templates/")
        assert component.endswith(f"@{TEMPLATE_VERSION}")


def test_the_templates_pass_yamllint() -> None:
    done = subprocess.run(
        [
            str(REPO / ".venv" / "bin" / "yamllint"),
            "-c",
            str(TEMPLATES / ".yamllint.yml"),
            str(TEMPLATES),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout
