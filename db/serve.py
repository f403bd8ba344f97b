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

import os
import socket
import sqlite3
import threading
import webbrowser
from contextlib import closing
from pathlib import Path
from typing import Any, Callable

from datasette.app import Datasette
from datasette.plugins import pm
from sqlalchemy.engine import make_url

from echolab.db.catalog import MIGRATIONS
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
        "description_html": f"<p>The capture catalog of the lab at <code>{lab.root}</code> (read-only).</p>"
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
) -> None:
    """Serve *lab*'s catalog until interrupted; ``on_ready(url)`` runs once it listens."""
    import uvicorn

    ds = build_datasette(lab)
    _check_port(host, port)
    url = f"http://{host}:{port}/"
    server = uvicorn.Server(uvicorn.Config(ds.app(), host=host, port=port, log_level="warning", lifespan="on"))

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


__all__ = ["DEFAULT_HOST", "DEFAULT_PORT", "ServeError", "build_datasette", "catalog_path", "metadata", "serve"]
