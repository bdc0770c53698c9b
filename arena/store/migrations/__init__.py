"""Alembic migrations of the results database; ``arena`` applies them when it opens a database."""
