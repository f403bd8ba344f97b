"""Browse a lab's catalog in a web browser: Datasette over the SQLite catalog, read-only.

``build_datasette(lab)`` gives the configured Datasette instance (tests and
notebooks use it in-process through ``datasette.client``); ``serve(...)`` runs it
with uvicorn. The pages a lab needs are set up here through Datasette metadata:
captures with facets by class, status and campaign, each capture's details with
a download link to its pcap, campaign progress and failures (canned queries),
and analysis runs with links to their reports. ``echolab.db.web.plugin`` serves the
files; ``echolab.db.web.queries`` holds the SQL.
"""

from __future__ import annotations

import hmac
import html
import ipaddress
import os
import secrets
import socket
import sqlite3
import threading
import webbrowser
from contextlib import closing
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import parse_qs, parse_qsl, quote, urlencode

from datasette.app import Datasette
from datasette.plugins import pm
from sqlalchemy.engine import make_url

from echolab.db.engine import MIGRATIONS
from echolab.db.web import plugin
from echolab.db.web.queries import CAMPAIGN_PROGRESS_SQL, CAPTURE_LIST_VIEW, FAILURES_BY_REASON_SQL
from echolab.errors import EcholabError
from echolab.labdir import LabDir

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8001
PLUGIN_REGISTRATION = "echolab-catalog-web"


class ServeError(EcholabError):
    """The catalog cannot be shown in the browser (not SQLite, missing, port taken)."""


def catalog_path(lab: LabDir) -> Path:
    """The SQLite file of *lab*'s catalog; a PostgreSQL or missing catalog is an error."""
    url = make_url(lab.catalog_url)
    if url.get_backend_name() != "sqlite":
        raise ServeError(
            f"the browser view needs a SQLite catalog, and this lab's is {url.get_backend_name()}; "
            "export it ('echolab catalog export dataset.tar.gz') and import that into a SQLite lab "
            "('echolab --lab LAB2 catalog import dataset.tar.gz'), then serve LAB2"
        )
    if not url.database or url.database == ":memory:":
        raise ServeError("the browser view needs a SQLite catalog file, not an in-memory one")
    path = Path(url.database).expanduser().resolve()
    if not path.is_file():
        raise ServeError(f"no catalog at {path}; create one with 'echolab --lab {lab.root} catalog init' "
                         "or import captures with 'catalog import'")
    _check_schema(path)
    return path


def _check_schema(path: Path) -> None:
    """Refuse a catalog whose schema is not this echolab's (read-only: never migrates)."""
    from alembic.script import ScriptDirectory

    head = ScriptDirectory(str(MIGRATIONS)).get_current_head()
    try:
        with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ServeError(f"{path} is not a readable echolab catalog ({exc}); "
                         "'echolab catalog init' creates one") from exc
    if row is None or row[0] != head:
        raise ServeError(f"the catalog at {path} has schema revision {row[0] if row else 'none'}, not "
                         f"{head}; open it once with 'echolab catalog stats' to upgrade it")


def _lab_links() -> str:
    """The home page's list of the pages a lab uses most."""
    links = [
        (f"/catalog/{CAPTURE_LIST_VIEW}", "Captures", "by class, status and campaign"),
        ("/catalog/campaign_progress", "Campaign progress", "good captures per class against the target"),
        ("/catalog/failures_by_reason", "Failures by reason", "failed attempts and why"),
        ("/catalog/analysis_runs", "Analysis runs", "classifier comparisons and their reports"),
        ("/catalog/campaigns", "Campaigns", "every collection run and import"),
    ]
    items = "".join(f'<li><a href="{href}">{title}</a>: {what}</li>' for href, title, what in links)
    return f"<ul>{items}</ul>"


def metadata(lab: LabDir) -> dict[str, Any]:
    """Datasette metadata: titles, descriptions, facets, sort orders, canned queries."""
    return {
        "title": f"echolab catalog: {lab.root.name}",
        "description_html": f"<p>The capture catalog of the lab at <code>{html.escape(str(lab.root))}</code> "
        "(read-only).</p>"
        + _lab_links(),
        "plugins": {plugin.PLUGIN_NAME: {"lab": str(lab.root)}},
        "databases": {
            plugin.DATABASE_NAME: {
                "description_html": _lab_links(),
                "tables": {
                    "alembic_version": {"hidden": True},
                    CAPTURE_LIST_VIEW: {
                        "title": "Captures",
                        "description": "One row per capture with its campaign. Click an id for every field "
                        "of the capture; the pcap column downloads its file.",
                        "facets": ["label", "status", "campaign"],
                        "sort_desc": "id",
                    },
                    "captures": {
                        "description": "Every field of every capture; 'path' downloads the file.",
                        "facets": ["label", "status", "campaign_id"],
                        "sort_desc": "id",
                        "label_column": "label",
                    },
                    "campaigns": {"description": "Collection runs and imports.", "sort_desc": "id",
                                  "facets": ["backend", "status"], "label_column": "name"},
                    "analysis_runs": {
                        "title": "Analysis runs",
                        "description": "Classifier comparisons; 'report_dir' opens the run's report.",
                        "sort_desc": "created_at",
                        "facets": ["status"],
                        "label_column": "name",
                    },
                    "prompts": {"description": "Spoken requests and their audio.", "facets": ["label", "engine"]},
                    "feature_rows": {"description": "Extracted features per capture file and extractor."},
                    "trial_results": {"description": "One trial of one model on one feature set.",
                                      "facets": ["feature_set", "model"]},
                    "devices": {"description": "The devices under test.", "label_column": "name"},
                },
                "queries": {
                    "campaign_progress": {
                        "title": "Campaign progress",
                        "description": "Per campaign and class: good captures against the campaign's target. "
                        "Leave campaign empty for all campaigns.",
                        "sql": CAMPAIGN_PROGRESS_SQL,
                        "params": ["campaign"],
                        "hide_sql": True,
                    },
                    "failures_by_reason": {
                        "title": "Failures by reason",
                        "description": "Failed attempts grouped by the kind of failure (the reason up to ':').",
                        "sql": FAILURES_BY_REASON_SQL,
                        "hide_sql": True,
                    },
                },
            }
        },
    }


def register_plugin() -> None:
    """Register the catalog's plugin with Datasette's plugin manager (once per process)."""
    if pm.get_plugin(PLUGIN_REGISTRATION) is None:
        pm.register(plugin, name=PLUGIN_REGISTRATION)


def build_datasette(lab: LabDir) -> Datasette:
    """A Datasette instance showing *lab*'s SQLite catalog read-only, at ``/catalog``."""
    path = catalog_path(lab)
    register_plugin()
    ds = Datasette(
        [], metadata=metadata(lab),
        settings={"default_page_size": 100, "sql_time_limit_ms": 3000, "allow_download": False},
    )
    ds.add_database(plugin.CatalogDatabase(ds, path=str(path), is_mutable=True), name=plugin.DATABASE_NAME)
    ds.remove_database("_memory")
    return ds


TOKEN_COOKIE = "echolab_token"
Asgi = Callable[[dict, Callable[[], Awaitable[dict]], Callable[[dict], Awaitable[None]]], Awaitable[None]]


def is_loopback(host: str) -> bool:
    """True when *host* (an address or ``localhost``) serves this machine only."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def require_token(app: Asgi, token: str) -> Asgi:
    """Wrap an ASGI app: a request passes with the token's cookie; ``?token=TOKEN`` sets it (and redirects).

    Anything else gets 403 and one line saying where the token is, as
    notebook servers do: the server prints its URL with the token once.
    """
    expected = token.encode()

    async def guarded(scope: dict, receive: Callable[[], Awaitable[dict]],
                      send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        given = parse_qs(scope.get("query_string", b"").decode(errors="replace")).get("token", [""])[0].encode()
        cookies = b";".join(v for k, v in scope.get("headers", []) if k == b"cookie")
        held = [c.strip().partition(b"=")[2] for c in cookies.split(b";") if c.strip().startswith(TOKEN_COOKIE.encode() + b"=")]
        if given and hmac.compare_digest(given, expected):  # set the cookie, and go on without the token
            rest = [(k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode(errors="replace"),
                                                 keep_blank_values=True) if k != "token"]
            where = quote(scope.get("root_path", "") + scope["path"]) + (f"?{urlencode(rest)}" if rest else "")
            cookie = f"{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax".encode()
            await send({"type": "http.response.start", "status": 302,
                        "headers": [(b"location", where.encode()), (b"set-cookie", cookie),
                                    (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        if any(hmac.compare_digest(h, expected) for h in held):
            return await app(scope, receive, send)
        body = (b"<html><body><h1>403: this catalog needs its token</h1><p>Open the URL that "
                b"'echolab catalog serve' printed when it started (it ends in ?token=...).</p></body></html>")
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"text/html; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return guarded


def host_name(header: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8001`` -> ``::1``, ``Example:80`` -> ``example``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    if header.count(":") == 1:
        return header.partition(":")[0]
    return header


def allowed_hosts(host: str) -> frozenset[str] | None:
    """The ``Host`` names a server bound to *host* answers: that address and ``localhost`` (with its
    loopback addresses); None for a wildcard bind (0.0.0.0, ::), where the token does the guarding."""
    bound = host_name(host) if host.startswith("[") else host.strip().lower()
    if bound in ("0.0.0.0", "::", ""):
        return None
    return frozenset({bound, "localhost", "127.0.0.1", "::1"} if is_loopback(bound) else {bound, "localhost"})


def require_host(app: Asgi, hosts: frozenset[str]) -> Asgi:
    """Wrap an ASGI app: a request whose ``Host`` header is not one of *hosts* gets 400.

    A web page the user visits can point its own name at 127.0.0.1 (DNS
    rebinding) and read what a loopback server answers; its requests carry
    its own name in ``Host``, so they are refused here.
    """

    async def checked(scope: dict, receive: Callable[[], Awaitable[dict]],
                      send: Callable[[dict], Awaitable[None]]) -> None:
        if scope["type"] != "http":
            return await app(scope, receive, send)
        given = [v for k, v in scope.get("headers", []) if k == b"host"]
        name = host_name(given[0].decode("latin-1")) if len(given) == 1 else ""
        if name in hosts:
            return await app(scope, receive, send)
        body = b"400: this catalog answers only requests for its own address (the Host header names another)"
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    return checked


def _check_port(host: str, port: int) -> None:
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as exc:
        why = os.strerror(exc.errno) if exc.errno else str(exc)
        raise ServeError(f"cannot listen on {host}:{port} ({why}); pick another with --port") from exc


def serve(
    lab: LabDir,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    open_browser: bool = True,
    *,
    on_ready: Callable[[str], None] | None = None,
    no_auth: bool = False,
    token: str | None = None,
) -> None:
    """Serve *lab*'s catalog until interrupted; ``on_ready(url)`` runs once it listens.

    Every request needs a token: *token*, or a random one, put in the URL
    given to ``on_ready`` (shown once); on loopback too, since any local
    program or user could otherwise read a household's captures. *no_auth*
    serves without one. Requests naming another host than the bound address
    or ``localhost`` are refused (DNS rebinding), token or not.
    """
    import uvicorn

    ds = build_datasette(lab)
    _check_port(host, port)
    app: Asgi = ds.app()
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}/"
    if not no_auth:
        token = token or secrets.token_urlsafe(24)
        app = require_token(app, token)
        url += f"?token={token}"
    hosts = allowed_hosts(host)
    if hosts is not None:
        app = require_host(app, hosts)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on"))

    def when_listening() -> None:
        while not server.started and not server.should_exit:
            threading.Event().wait(0.05)
        if server.started:
            if on_ready is not None:
                on_ready(url)
            if open_browser:
                webbrowser.open(url)

    threading.Thread(target=when_listening, daemon=True).start()
    server.run()


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ServeError", "allowed_hosts", "build_datasette", "catalog_path",
           "host_name", "is_loopback", "metadata", "require_host", "require_token", "serve"]
