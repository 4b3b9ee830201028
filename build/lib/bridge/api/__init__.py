"""The bridge's HTTP face: a thin layer over the ledger, invoices and auth services."""
