"""The bridge: usage ledger, run provenance and invoices for the platform."""
