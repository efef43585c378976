"""PostgreSQL probe family: server state, SQL assertions, Alembic revisions, ciphertext."""
