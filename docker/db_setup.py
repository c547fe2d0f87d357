#!/usr/bin/env python3
"""Bring the schema up to date as its owner, then give the app a role that owns nothing.

    imagepipe-db-setup

Installed in the image as ``imagepipe-db-setup``; the one-shot ``migrate`` service (and
the Kubernetes migrate Job) run it. Environment:

    IMAGEPIPE_DATABASE_URL   the schema owner's URL (runs the migrations)
    POSTGRES_APP_USER        the role the api, worker and beat log in as (optional:
                             unset, only the migrations run)
    POSTGRES_APP_PASSWORD    its password, set again on every run (rotation = change it
                             here and in the app's URL, then run this again)

The app role logs in, reads and writes rows and uses sequences; it cannot create, alter
or drop anything, is no superuser, and only reads ``alembic_version``. Safe to run any
number of times. PostgreSQL only; with SQLite it only migrates.
"""

from __future__ import annotations

import os
import subprocess
import sys

ROLE_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS"


class SetupError(Exception):
    """A configuration mistake, said in one line."""


def _admin_conninfo(database_url: str) -> tuple[str, str]:
    """The owner's libpq URL (percent-encoding kept) and user name."""
    from sqlalchemy.engine import make_url

    url = make_url(database_url)
    if not url.password and not os.environ.get("PGPASSWORD"):
        raise SetupError(
            "the database URL has no password: set POSTGRES_PASSWORD "
            "(or the password in IMAGEPIPE_DATABASE_URL)"
        )
    plain = url.set(drivername="postgresql")
    return plain.render_as_string(hide_password=False), url.username or ""


def migrate() -> None:
    # The application's own command, in a child process: exactly what `imagepipe
    # migrate` does, with the same settings.
    subprocess.run([sys.executable, "-m", "imagepipe.cli", "migrate"], check=True)


def ensure_app_role(conninfo: str, role: str, password: str) -> None:
    import psycopg
    from psycopg import sql

    name = sql.Identifier(role)
    with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
        flags = conn.execute(
            "SELECT rolsuper OR rolcreatedb OR rolcreaterole OR rolreplication OR rolbypassrls"
            " FROM pg_roles WHERE rolname = %s",
            (role,),
        ).fetchone()
        # Utility statements take no bind parameters: the password is quoted client-side.
        if flags is None:
            statement = "CREATE ROLE {} WITH " + ROLE_ATTRIBUTES + " PASSWORD {}"
        elif flags[0]:
            # Taking rights away needs a superuser owner (as in compose); a managed
            # database's owner gets a clear error here rather than a role left too strong.
            statement = "ALTER ROLE {} WITH " + ROLE_ATTRIBUTES + " PASSWORD {}"
        else:
            statement = "ALTER ROLE {} WITH LOGIN PASSWORD {}"
        conn.execute(sql.SQL(statement).format(name, sql.Literal(password)))
        database = conn.execute("SELECT current_database()").fetchone()
        schema = conn.execute("SELECT current_schema()").fetchone()
        assert database is not None and schema is not None
        db, sch = sql.Identifier(database[0]), sql.Identifier(schema[0])
        statements = [
            # PostgreSQL before 15 lets every role create tables in public: not this one.
            sql.SQL("REVOKE CREATE ON SCHEMA {} FROM PUBLIC").format(sch),
            sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(db, name),
            sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO {}").format(db, name),
            sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(sch, name),
            sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {}").format(
                sch, name
            ),
            sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {}").format(sch, name),
            # Tables a later migration creates (as this owner) come with the same rights,
            # even if someone runs `imagepipe migrate` by hand instead of this script.
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA {} "
                "GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {}"
            ).format(sch, name),
            sql.SQL(
                "ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT USAGE, SELECT ON SEQUENCES TO {}"
            ).format(sch, name),
        ]
        versions = conn.execute("SELECT to_regclass('alembic_version')").fetchone()
        if versions is not None and versions[0] is not None:
            # The schema version is the migrations' business: the app may only read it.
            statements.append(
                sql.SQL("REVOKE INSERT, UPDATE, DELETE ON alembic_version FROM {}").format(name)
            )
        with conn.transaction():
            for statement in statements:
                conn.execute(statement)


def main() -> int:
    import psycopg

    database_url = os.environ.get("IMAGEPIPE_DATABASE_URL", "")
    role = os.environ.get("POSTGRES_APP_USER", "").strip()
    password = os.environ.get("POSTGRES_APP_PASSWORD", "")
    try:
        if not database_url.startswith("postgresql"):
            migrate()
            return 0
        conninfo, owner = _admin_conninfo(database_url)
        if role and not password:
            raise SetupError(f"set POSTGRES_APP_PASSWORD: the password of the {role} role")
        if role and role == owner:
            raise SetupError(f"POSTGRES_APP_USER must not be the schema owner ({owner})")
        migrate()
        if role:
            ensure_app_role(conninfo, role, password)
            print(f"role {role}: may read and write rows, nothing more")
    except SetupError as error:
        print(f"imagepipe-db-setup: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        return error.returncode or 1
    except psycopg.Error as error:
        # e.g. the owner may not take rights away from an existing role: say so plainly.
        print(f"imagepipe-db-setup: PostgreSQL refused: {error}".strip(), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
