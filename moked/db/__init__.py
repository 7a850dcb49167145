"""Postgres: the schema, sessions and migrations."""
