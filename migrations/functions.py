"""What a migration does with the server-side functions it makes: create each one, revoke
it from PUBLIC and grant it to the app role alone; drop them on the way down."""

from __future__ import annotations

from alembic import op

from config import Settings


def create(functions: dict[str, str]) -> None:
    """`functions`: signature -> the rest of its CREATE FUNCTION (RETURNS ... AS $$ ... $$)."""
    role = Settings().db_app_role
    for signature, body in functions.items():
        op.execute(f"CREATE FUNCTION {signature} {body}")
        op.execute(f"REVOKE ALL ON FUNCTION {signature} FROM PUBLIC")
        op.execute(f'GRANT EXECUTE ON FUNCTION {signature} TO "{role}"')


def drop(functions: dict[str, str]) -> None:
    for signature in functions:
        op.execute(f"DROP FUNCTION {signature}")
