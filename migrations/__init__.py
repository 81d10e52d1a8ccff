"""Alembic migrations (`versions/`) and what they share (`functions`)."""
