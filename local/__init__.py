"""Local mode: the platform's services as throwaway processes on loopback (demo and tests)."""
