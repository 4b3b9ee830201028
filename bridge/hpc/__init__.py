"""HPC usage: Slurm's accounting of the cluster jobs that CI jobs ran, and its invoice lines.

The `slurm-job` pipeline template reports, once its Slurm job has ended, what Slurm
accounted (elapsed time, allocated CPUs, GPUs and memory) with the CI job's ID token. It is
billed as lines of kind `hpc`: CPU-hours = elapsed x allocated CPUs, GPU-hours = elapsed x
allocated GPUs, priced by the rates file's `hpc:` section. The CI job that waited for the
cluster is billed like any job by its runner class; give such jobs a runner class priced at
zero (docs/hpc.md) so the wait is not billed on top of the cluster's time.
"""
