"""`emotional-engine keys`: API keys for the HTTP service."""

from typing import Annotated

import typer

keys_app = typer.Typer(help="API keys for the HTTP service (kept hashed in the database).", no_args_is_help=True)


def _open_store():
    """The configured store (EE_DATABASE_URL), migrated; exits with a message if it cannot be opened."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from emotional_engine.config import get_settings
    from emotional_engine.storage import Store

    store = Store.from_settings(get_settings())
    try:
        store.migrate()
    except SQLAlchemyError as e:
        url = make_url(store.url).render_as_string(hide_password=True)
        typer.echo(
            f"error: cannot open the database at {url} (set EE_DATABASE_URL): {e.__class__.__name__}: "
            f"{str(e).splitlines()[0]}",
            err=True,
        )
        raise typer.Exit(1) from None
    return store


def _keys_table(keys):
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE)
    for col in ("id", "name", "prefix", "created (UTC)", "status"):
        table.add_column(col, no_wrap=col != "name")
    for k in keys:
        status = f"revoked {k.revoked_at:%Y-%m-%d %H:%M}" if k.revoked_at else "active"
        table.add_row(k.id, k.name, k.prefix, f"{k.created_at:%Y-%m-%d %H:%M}", status)
    return table


def _wide_console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, width=140)  # ids are 32 characters: do not fold them


@keys_app.command("create")
def keys_create(name: Annotated[str, typer.Argument(help="who or what the key is for")]):
    """Create a key. The key itself goes to stdout, once: it is stored only as a hash."""
    store = _open_store()
    try:
        plain, info = store.create_key(name)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    finally:
        store.close()
    err = _wide_console(stderr=True)
    err.print(_keys_table([info]))
    err.print("[bold yellow]Store this key now: it is shown only once and cannot be recovered.[/]")
    typer.echo(plain)


@keys_app.command("list")
def keys_list():
    """List the keys (never the keys themselves: id, name, prefix, created, status)."""
    store = _open_store()
    keys = store.list_keys()
    store.close()
    if not keys:
        typer.echo("no API keys yet; create one with `emotional-engine keys create NAME`")
        return
    _wide_console().print(_keys_table(keys))


@keys_app.command("revoke")
def keys_revoke(key: Annotated[str, typer.Argument(metavar="ID_OR_PREFIX", help="the key's id or prefix (ee_...)")]):
    """Revoke a key: requests with it are refused from now on."""
    store = _open_store()
    revoked = store.revoke_key(key)
    store.close()
    if not revoked:
        typer.echo(f"error: no active key with id or prefix {key!r}; see `emotional-engine keys list`", err=True)
        raise typer.Exit(1)
    typer.echo(f"revoked {key}")
