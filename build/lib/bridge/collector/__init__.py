"""The usage collector (`bridge collect`): measured usage of job containers on a runner host.

Every few seconds it lists the host's GitLab job containers through the Docker API (by the
runner's labels), reads their CPU time and memory from the cgroup files, adds up memory
and GPU allocation over time, and posts each container's cumulative totals to the bridge.
What the bridge has not acknowledged stays in a local spool and is sent again later; the
bridge keeps the largest total per container, so nothing counts twice (`bridge.usage`).
It talks to the bridge over HTTP only and imports nothing of the ledger.
"""
