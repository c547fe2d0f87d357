"""docker/db_setup.py against a real PostgreSQL: migrations as the owner, and an app
role that reads and writes rows but can change nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
from sqlalchemy.engine import make_url

from tests.harness.postgres import PrivatePostgres

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "db_setup.py"
PASSWORD = "first-password"


@dataclass
class Database:
    owner_url: str  # postgresql+asyncpg://, as the containers are given it
    app_role: str
    server_admin_url: str  # the server's superuser, for setting up and looking

    def conninfo(self, user: str, password: str) -> str:
        url = make_url(self.owner_url).set(
            drivername="postgresql", username=user, password=password
        )
        return url.render_as_string(hide_password=False)

    def run_setup(self, **env: str) -> subprocess.CompletedProcess[str]:
        environment = {
            **os.environ,
            "IMAGEPIPE_DATABASE_URL": self.owner_url,
            "POSTGRES_APP_USER": self.app_role,
            "POSTGRES_APP_PASSWORD": PASSWORD,
            **env,
        }
        return subprocess.run(
            [sys.executable, str(SCRIPT)], env=environment, capture_output=True, text=True
        )

    def admin(self, database: str | None = None) -> psycopg.Connection[tuple[object, ...]]:
        url = make_url(self.server_admin_url)
        if database:
            url = url.set(database=database)
        return psycopg.connect(url.render_as_string(hide_password=False), autocommit=True)


@pytest.fixture(params=["managed", "superuser"])
def database(
    request: pytest.FixtureRequest, postgres_server: PrivatePostgres
) -> Iterator[Database]:
    """A fresh database owned by a fresh role, either no superuser (as on a managed
    PostgreSQL) or a superuser (as the postgres image's POSTGRES_USER), and the name of
    an app role that does not exist yet."""
    suffix = uuid.uuid4().hex[:10]
    owner, app_role = f"ip_owner_{suffix}", f"ip_app_{suffix}"
    rights = "CREATEROLE" if request.param == "managed" else "SUPERUSER"
    server = Database("", app_role, postgres_server.admin_url)
    with server.admin() as admin:
        admin.execute(f"CREATE ROLE {owner} LOGIN {rights} PASSWORD 'owner-password'")
    try:
        with postgres_server.database() as admin_url:
            name = make_url(admin_url).database
            with server.admin() as admin:
                admin.execute(f'ALTER DATABASE "{name}" OWNER TO {owner}')
            owner_url = make_url(admin_url).set(username=owner, password="owner-password")
            server.owner_url = owner_url.render_as_string(hide_password=False)
            yield server
    finally:
        with server.admin() as admin:
            admin.execute(f"DROP ROLE IF EXISTS {app_role}")
            admin.execute(f"DROP ROLE IF EXISTS {owner}")


def _refused(conn: psycopg.Connection[tuple[object, ...]], statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute(statement)
    conn.rollback()


def test_app_role_reads_and_writes_rows_and_changes_nothing_else(database: Database) -> None:
    result = database.run_setup()
    assert result.returncode == 0, result.stderr

    with psycopg.connect(database.conninfo(database.app_role, PASSWORD)) as app:
        flags = app.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        ).fetchone()
        assert flags == (False, False, False)
        # Every kind of row access the app needs, on the real tables.
        app.execute("SELECT count(*) FROM tasks")
        app.execute("INSERT INTO tasks SELECT * FROM tasks WHERE false")
        app.execute("UPDATE tasks SET status = status WHERE false")
        app.execute("DELETE FROM tasks WHERE false")
        app.execute("SELECT version_num FROM alembic_version").fetchone()
        app.commit()
        # ...and nothing that changes the schema or the migrations' bookkeeping.
        _refused(app, "CREATE TABLE intruder (id int)")
        _refused(app, "DROP TABLE tasks")
        _refused(app, "ALTER TABLE tasks ADD COLUMN intruder int")
        _refused(app, "UPDATE alembic_version SET version_num = version_num")


def test_tables_of_later_migrations_come_with_the_same_rights(database: Database) -> None:
    assert database.run_setup().returncode == 0
    # A table created later by the owner, as `imagepipe migrate` run by hand would.
    owner_url = make_url(database.owner_url)
    owner_conninfo = database.conninfo(owner_url.username or "", owner_url.password or "")
    with psycopg.connect(owner_conninfo) as owner:
        owner.execute("CREATE TABLE later (id serial PRIMARY KEY, note text)")
    with psycopg.connect(database.conninfo(database.app_role, PASSWORD)) as app:
        app.execute("INSERT INTO later (note) VALUES ('rows, yes')")
        assert app.execute("SELECT note FROM later").fetchone() == ("rows, yes",)


def test_running_again_is_harmless_and_sets_the_new_password(database: Database) -> None:
    assert database.run_setup().returncode == 0
    name = make_url(database.owner_url).database
    with database.admin(name) as admin:
        before = admin.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (database.app_role,)
        ).fetchone()
    again = database.run_setup(POSTGRES_APP_PASSWORD="rotated-password")
    assert again.returncode == 0, again.stderr
    with database.admin(name) as admin:
        after = admin.execute(
            "SELECT rolpassword FROM pg_authid WHERE rolname = %s", (database.app_role,)
        ).fetchone()
    assert before is not None and after is not None and before != after
    with psycopg.connect(database.conninfo(database.app_role, "rotated-password")) as app:
        app.execute("SELECT count(*) FROM tasks")


def test_a_role_with_too_many_rights_is_cut_back_or_refused(database: Database) -> None:
    with database.admin() as admin:
        admin.execute(f"CREATE ROLE {database.app_role} LOGIN CREATEDB CREATEROLE")
        superuser_owner = admin.execute(
            "SELECT rolsuper FROM pg_roles WHERE rolname = %s",
            (make_url(database.owner_url).username,),
        ).fetchone() == (True,)
    result = database.run_setup()
    with database.admin() as admin:
        flags = admin.execute(
            "SELECT rolcreatedb, rolcreaterole FROM pg_roles WHERE rolname = %s",
            (database.app_role,),
        ).fetchone()
    if superuser_owner:
        assert result.returncode == 0, result.stderr
        assert flags == (False, False)
    else:
        # Only a superuser may take those rights away: a clear failure, not a role
        # left stronger than it should be with the app running on it.
        assert result.returncode != 0
        assert "must be superuser" in result.stderr or "permission denied" in result.stderr
        assert flags == (True, True)


# Refusals come before any connection: the owner's kind of role cannot matter.
@pytest.mark.parametrize("database", ["managed"], indirect=True)
@pytest.mark.parametrize(
    ("env", "says"),
    [
        ({"POSTGRES_APP_PASSWORD": ""}, "set POSTGRES_APP_PASSWORD"),
        ({"POSTGRES_APP_USER": "OWNER"}, "must not be the schema owner"),
    ],
)
def test_refuses_a_missing_password_or_the_owner_as_app_role(
    database: Database, env: dict[str, str], says: str
) -> None:
    if env.get("POSTGRES_APP_USER") == "OWNER":
        env = {"POSTGRES_APP_USER": make_url(database.owner_url).username or ""}
    result = database.run_setup(**env)
    assert result.returncode == 2
    assert says in result.stderr
    # Refused before touching anything: not even the migrations ran.
    name = make_url(database.owner_url).database
    with database.admin(name) as admin:
        assert admin.execute("SELECT to_regclass('tasks')").fetchone() == (None,)


@pytest.mark.parametrize("database", ["managed"], indirect=True)
def test_refuses_a_database_url_without_a_password(database: Database) -> None:
    url = make_url(database.owner_url).set(password="").render_as_string(hide_password=False)
    env = {k: v for k, v in os.environ.items() if k != "PGPASSWORD"}
    result = subprocess.run(
        [sys.executable, str(SCRIPT)],
        env={**env, "IMAGEPIPE_DATABASE_URL": url, "POSTGRES_APP_USER": database.app_role},
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "set POSTGRES_PASSWORD" in result.stderr
