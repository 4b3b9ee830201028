"""Named SQL of the pages."""

CLIENTS = "SELECT slug FROM clients ORDER BY slug"
