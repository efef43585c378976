"""Alembic environment of the test migrations: offline mode renders SQL for psql; online
mode (the rollback rehearsal) logs as alembic's template does and connects with `sqlalchemy.url`, which names the driver
only: libpq's PG* environment gives host, user, password and database."""

from logging.config import fileConfig

from alembic import context
from sqlalchemy import engine_from_config, pool

config = context.config
if config.config_file_name is not None and config.get_section("loggers"):
    fileConfig(config.config_file_name)  # as alembic's own template does
OPTIONS = {
    "version_table": config.get_main_option("version_table") or "alembic_version",
    "version_table_schema": config.get_main_option("version_table_schema") or None,
}


def run_migrations_offline() -> None:
    context.configure(
        url=config.get_main_option("sqlalchemy.url"),
        literal_binds=True,
        dialect_opts={"paramstyle": "named"},
        **OPTIONS,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = engine_from_config(config.get_section(config.config_ini_section, {}),
                                prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, **OPTIONS)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
