"""Everything that knows GitLab's shapes: webhook payloads and API access."""
