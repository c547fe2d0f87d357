"""Alembic environment: runs migrations with the sync engine for the configured URL."""

from __future__ import annotations

from alembic import context

from imagepipe.db.engine import make_sync_engine
from imagepipe.db.models import Base

config = context.config
url = config.get_main_option("sqlalchemy.url")
if not url:
    raise RuntimeError("sqlalchemy.url is not set; run migrations through `imagepipe migrate`")


def run_migrations_online() -> None:
    assert url is not None
    engine = make_sync_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            # SQLite cannot ALTER most things in place; batch mode copies the table.
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations_online()
