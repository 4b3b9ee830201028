"""The platform's own pages, served by the bridge: server-rendered HTML, no script or style
from anywhere but the bridge itself (sites may be air-gapped)."""
