"""Starting an analysis pipeline: `POST /projects/:id/pipeline` through python-gitlab.

Creating a pipeline is not idempotent, so nothing here retries: a failure is reported and
the submission can be repeated (the analysis is recorded only once GitLab answered).
"""

from __future__ import annotations

from typing import Any, Protocol

import gitlab
import requests


class TriggerRefused(ValueError):
    """GitLab refused the pipeline (unknown project or ref, invalid variables)."""


class TriggerFailed(RuntimeError):
    """GitLab could not be reached or failed; nothing was started as far as we know."""


class Trigger(Protocol):
    def __call__(self, project: str, ref: str, variables: dict[str, str]) -> dict[str, Any]: ...


class GitLabTrigger:
    def __init__(self, url: str, token: str, timeout: float = 30.0) -> None:
        self._gl = gitlab.Gitlab(
            url.rstrip("/"),
            private_token=token,
            timeout=timeout,
            retry_transient_errors=False,
            keep_base_url=True,
        )

    def __call__(self, project: str, ref: str, variables: dict[str, str]) -> dict[str, Any]:
        """The pipeline GitLab created (its REST entity)."""
        body = {
            "ref": ref,
            "variables": [
                {"key": key, "value": value, "variable_type": "env_var"}
                for key, value in sorted(variables.items())
            ],
        }
        try:
            pipeline = self._gl.projects.get(project, lazy=True).pipelines.create(body)
        except gitlab.exceptions.GitlabCreateError as exc:
            if exc.response_code in (400, 403, 404, 422):
                raise TriggerRefused(
                    f"GitLab refused a pipeline of {project}@{ref}: {exc}"
                ) from None
            raise TriggerFailed(
                f"GitLab failed to create a pipeline of {project}@{ref}: {exc}"
            ) from None
        except (gitlab.exceptions.GitlabError, requests.RequestException) as exc:
            raise TriggerFailed(
                f"GitLab unreachable creating a pipeline of {project}: {exc}"
            ) from None
        return dict(pipeline.attributes)
