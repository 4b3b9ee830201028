"""Analyses: a GitLab pipeline run on one dataset, its status, and what it produced."""
