"""The Datasette plugin of the catalog's web pages.

Registered in-process by ``echolab.db.serve.build_datasette`` (no entry point), it

* creates the ``capture_list`` TEMP view on each read-only catalog connection
  (``CatalogDatabase`` makes Datasette list and render it like a stored view);
* serves capture files at ``/-/pcap/<capture id>`` and analysis reports at
  ``/-/reports/<run name>/<file>``, read-only, from the lab's ``captures/`` and
  ``reports/`` folders and nowhere else (symlinks and ``..`` that lead out are
  refused);
* renders the path columns as download links and report folders as links.

Every hook does nothing unless the Datasette instance carries the ``echolab``
plugin configuration, so other Datasette instances in the process are untouched.
"""

from __future__ import annotations

import mimetypes
import sqlite3
from pathlib import Path
from typing import Any, Awaitable, Callable
from urllib.parse import quote, unquote

from datasette import hookimpl
from datasette.app import Datasette
from datasette.database import Database
from datasette.utils.asgi import AsgiFileDownload, Request, Response
from markupsafe import Markup, escape

from echolab.db.catalog import safe_name
from echolab.safepaths import UnsafePathError
from echolab.db.web.queries import CAPTURE_LIST_SQL, CAPTURE_LIST_VIEW

Route = Callable[[Datasette, Request], Awaitable["AsgiFileDownload | Response"]]

PLUGIN_NAME = "echolab"
DATABASE_NAME = "catalog"
# IANA's type for libpcap files; pcapng has no registered type, Wireshark uses this one.
PCAP_TYPES = {".pcap": "application/vnd.tcpdump.pcap", ".pcapng": "application/x-pcapng"}


class CatalogDatabase(Database):
    """The catalog, opened read-only (``?mode=ro``), with its TEMP views listed as views.

    Datasette looks views up in ``sqlite_master`` only; the catalog's browsing
    view lives in ``sqlite_temp_master`` because the catalog is never written to.
    """

    async def view_names(self) -> list[str]:
        rows = await self.execute(
            "SELECT name FROM sqlite_master WHERE type = 'view' "
            "UNION SELECT name FROM sqlite_temp_master WHERE type = 'view' ORDER BY name"
        )
        return [r[0] for r in rows.rows]

    async def get_view_definition(self, view: str) -> str | None:
        stored = await self.get_table_definition(view, "view")
        if stored:
            return stored
        rows = await self.execute(
            "SELECT sql FROM sqlite_temp_master WHERE type = 'view' AND name = :n", {"n": view}
        )
        return rows.rows[0][0] + ";" if rows.rows else None


def lab_dirs(datasette: Datasette) -> tuple[Path, Path, Path] | None:
    """(lab root, captures folder, reports folder), resolved; None for a foreign Datasette."""
    config = datasette.plugin_config(PLUGIN_NAME) or {}
    if "lab" not in config:
        return None
    root = Path(config["lab"]).resolve()
    return root, (root / "captures").resolve(), (root / "reports").resolve()


def inside(base: Path, *parts: str) -> Path | None:
    """``base/parts`` with symlinks resolved, or None when that lands outside *base*."""
    base = base.resolve()
    target = base.joinpath(*parts).resolve()
    return target if target.is_relative_to(base) else None


class Refused(Exception):
    """A file request that cannot be met: shown as an error page with *status*."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


async def error_page(datasette: Datasette, request: Request, exc: Refused) -> Response:
    """Datasette's error page, without the traceback it prints for raised errors."""
    html = await datasette.render_template(
        "error.html", {"ok": False, "error": str(exc), "status": exc.status, "title": None}, request=request
    )
    return Response.html(html, status=exc.status)


@hookimpl
def prepare_connection(conn: sqlite3.Connection, database: str, datasette: Datasette) -> None:
    if database == DATABASE_NAME and lab_dirs(datasette) is not None:
        conn.execute(CAPTURE_LIST_SQL)


def _route(serve: Callable[[Datasette, Request, tuple[Path, Path, Path]], Awaitable[AsgiFileDownload]],
           doc: str) -> Route:
    """A route handler that serves a file of the lab's folders (root, captures, reports) with *serve*,
    or the error page of its refusal."""
    async def handler(datasette: Datasette, request: Request) -> AsgiFileDownload | Response:
        try:
            dirs = lab_dirs(datasette)
            if dirs is None:
                raise Refused(404, "not an echolab catalog")
            return await serve(datasette, request, dirs)
        except Refused as exc:
            return await error_page(datasette, request, exc)

    handler.__doc__ = doc
    return handler


async def _pcap_file(datasette: Datasette, request: Request, dirs: tuple[Path, Path, Path]) -> AsgiFileDownload:
    root, captures, _reports = dirs
    capture_id = int(request.url_vars["capture_id"])
    rows = await datasette.get_database(DATABASE_NAME).execute(
        "SELECT path, label FROM captures WHERE id = ?", [capture_id]
    )
    if not rows.rows:
        raise Refused(404, f"no capture with id {capture_id}")
    rel, label = rows.rows[0]
    if not rel:
        raise Refused(404, f"capture {capture_id} has no file (a failed attempt)")
    path = inside(root, rel)
    if path is None or not path.is_relative_to(captures):
        raise Refused(403, f"capture {capture_id}'s file is outside the lab's captures folder")
    if not path.is_file():
        raise Refused(404, f"the file of capture {capture_id} is missing: {rel}; 'echolab catalog verify' checks all")
    suffix = path.suffix.lower()
    try:
        named = f"-{safe_name(label)}"
    except UnsafePathError:  # a label from another lab's catalog that cannot name a file
        named = ""
    return AsgiFileDownload(
        path, filename=f"capture-{capture_id}{named}{suffix}",
        content_type=PCAP_TYPES.get(suffix, "application/octet-stream"),
    )


def report_folder(root: Path, reports: Path, name: str, report_dir: str | None) -> Path | None:
    """Where a run's report lives: its ``report_dir`` (absolute or lab-relative) or reports/NAME."""
    try:
        folder = Path(report_dir) if report_dir else reports / safe_name(name, "run")
    except UnsafePathError:  # a run name that cannot be a folder has no report there
        return None
    folder = (root / folder).resolve()  # an absolute report_dir replaces root
    return folder if folder.is_relative_to(reports) else None


async def _report_file(datasette: Datasette, request: Request, dirs: tuple[Path, Path, Path]) -> AsgiFileDownload:
    root, _captures, reports = dirs
    name = unquote(request.url_vars["run"])
    rel = unquote(request.url_vars["path"]) or "index.html"
    rows = await datasette.get_database(DATABASE_NAME).execute(
        "SELECT report_dir FROM analysis_runs WHERE name = ?", [name]
    )
    if not rows.rows:
        raise Refused(404, f"no analysis run named {name!r}")
    folder = report_folder(root, reports, name, rows.rows[0][0])
    if folder is None:
        raise Refused(403, f"the report of {name!r} is outside the lab's reports folder")
    target = inside(folder, *rel.split("/"))
    if target is None:
        raise Refused(403, "that path leads out of the report's folder")
    if target.is_dir():
        target = target / "index.html"
    if not target.is_file():
        raise Refused(404, f"no file {rel!r} in the report of {name!r}")
    content_type = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return AsgiFileDownload(target, content_type=content_type)


@hookimpl
def register_routes(datasette: Datasette) -> list[tuple[str, Any]]:
    return [
        (r"^/-/pcap/(?P<capture_id>[0-9]+)$",
         _route(_pcap_file, "The file of one capture, as an attachment named after its id and class.")),
        (r"^/-/reports/(?P<run>[^/]+)/(?P<path>.*)$",
         _route(_report_file, "A file of an analysis run's report (index.html when none is named), shown inline.")),
    ]


def pcap_url(datasette: Datasette, capture_id: int) -> str:
    return datasette.urls.path(f"/-/pcap/{capture_id}")


def report_url(datasette: Datasette, run_name: str) -> str:
    return datasette.urls.path(f"/-/reports/{quote(run_name, safe='')}/index.html")


@hookimpl
def render_cell(row: Any, value: Any, column: str, table: str | None, database: str, datasette: Datasette) -> Any:
    dirs = lab_dirs(datasette)
    if database != DATABASE_NAME or table is None or dirs is None:
        return None
    if (table, column) in (("captures", "path"), (CAPTURE_LIST_VIEW, "pcap")) and value:
        name = escape(Path(str(value)).name)
        return Markup(f'<a class="pcap-download" href="{pcap_url(datasette, row["id"])}" download>{name}</a>')
    if table == CAPTURE_LIST_VIEW and column == "id" and value is not None:
        href = datasette.urls.table(DATABASE_NAME, "captures") + f"/{int(value)}"
        return Markup(f'<a class="capture-detail" href="{href}">{int(value)}</a>')
    if table == "analysis_runs" and column == "report_dir":
        root, _captures, reports = dirs
        folder = report_folder(root, reports, row["name"], value)
        if folder is None or not (folder / "index.html").is_file():
            return None  # shown as plain text: nothing to link to
        href = escape(report_url(datasette, row["name"]))
        return Markup(f'<a class="report-link" href="{href}">{escape(value or "report")}</a>')
    return None
