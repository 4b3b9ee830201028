"""Postgres access: the connection pool, migrations and the named SQL of the bridge."""
