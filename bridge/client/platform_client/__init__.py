"""The platform from Python: find datasets by metadata as a pandas DataFrame, submit an
analysis on one, follow its status.

    from platform_client import Platform
    platform = Platform()  # PLATFORM_URL and PLATFORM_TOKEN from the environment
    df = platform.datasets(where=["operator=charlie", "experiment=ARB-diff",
                                  "date>=2026-05-01"])
    analysis = platform.submit(df.id[0], "lab/qc@main", variables={"MODE": "fast"})
    platform.wait(analysis["id"])
"""

from platform_client.client import COLUMNS, Platform, PlatformError

__all__ = ["COLUMNS", "Platform", "PlatformError"]
