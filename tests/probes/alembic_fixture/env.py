"""Alembic environment of the test migrations (offline mode renders SQL for psql)."""

from alembic import context

config = context.config


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        version_table=config.get_main_option("version_table") or "alembic_version",
        version_table_schema=config.get_main_option("version_table_schema") or None,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    raise RuntimeError("these test migrations are rendered offline (alembic --sql)")
