"""Run inside the deployed `mlflow` container (`python -c`, arguments USER GROUP): make USER
known to MLflow as a member of GROUP, and give GROUP its grant `^GROUP/.*` -> EDIT.

On a real site a user becomes known at her first GitLab login (mlflow-oidc-auth writes the
user and her groups), and the group sync grants the group through the plugin's admin API with
an admin's token. The converge test's GitLab stand-in has no login, so nobody (no admin
either) can sign in: this writes the same rows through the plugin's own store, with the calls
and the `oidc:default` attribution its login uses, and the grant the sync would add.
Idempotent.
"""

import sys

from mlflow_oidc_auth import user
from mlflow_oidc_auth.store import store

name, group = sys.argv[1:3]
written_by = "oidc:default"
user.create_user(username=name, display_name=name, is_admin=False, written_by=written_by)
user.populate_groups(group_names=[group], written_by=written_by)
user.update_user(username=name, group_names=[group], written_by=written_by)
pattern = "^" + group.replace(".", r"\.") + "/.*"
if not any(p.regex == pattern for p in store.list_group_experiment_regex_permissions(group)):
    store.create_group_experiment_regex_permission(
        group_name=group, regex=pattern, priority=100, permission="EDIT"
    )
print(f"{name} is known to MLflow, member of {group} ({pattern} -> EDIT)")
