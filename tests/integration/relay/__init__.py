"""Outbox relay tests against real PostgreSQL and the broker."""
