"""The bridge: usage ledger, run provenance and invoices for the platform."""

__version__ = "0.1.0"
