"""The lab directory: where one lab's catalog, captures, audio and reports live.

Layout (documented in docs/lab-directory.md)::

    LAB/
      echolab.toml          settings of this lab (optional; see Settings)
      catalog.sqlite        the catalog, unless catalog_url points elsewhere
      captures/             pcapng files, one per request, named by the catalog
      audio/                the speech cache (engine/voice/hash.wav)
      prompts/              this lab's own prompt lists (e.g. directions.txt)
      reports/              one folder per analysis run
      logs/                 campaign logs
      tmp/                  captures in progress (same file system, so a
                            finished capture is moved in with one rename)

A lab is picked with ``echolab --lab DIR`` or the ``ECHOLAB_LAB`` environment
variable; the default is ``./lab``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from echolab.errors import LabError, shown
from echolab.safepaths import is_inside, safe_component
from echolab.tomlfiles import read_toml

LAB_ENV = "ECHOLAB_LAB"
CATALOG_URL_ENV = "ECHOLAB_CATALOG_URL"
DEFAULT_LAB = Path("lab")
SETTINGS_FILE = "echolab.toml"
#: libpq connection options a lab's settings may put in a PostgreSQL catalog_url: where the server is,
#: how the connection is encrypted and kept alive, and what it is called. None names a file on this
#: machine (passfile, sslcert, sslkey, sslkeylogfile, sslrootcert, sslcrl, service...) or changes the
#: server session (options, replication); those come only from ECHOLAB_CATALOG_URL, the user's own.
POSTGRES_OPTIONS = frozenset({
    "host", "hostaddr", "port", "dbname", "user", "password", "sslmode", "sslnegotiation", "sslsni",
    "sslcertmode", "ssl_min_protocol_version", "ssl_max_protocol_version", "gssencmode", "channel_binding",
    "require_auth", "target_session_attrs", "load_balance_hosts", "connect_timeout", "client_encoding",
    "application_name", "fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "krbsrvname", "gsslib", "sslcompression", "min_protocol_version",
    "max_protocol_version",
})
SUBDIRS = ("captures", "audio", "prompts", "reports", "logs", "tmp")


def _check_postgres_url(parsed: Any, where: str) -> None:
    """Refuse a PostgreSQL URL from a lab's settings that sets options outside :data:`POSTGRES_OPTIONS`
    or names no network host (a local socket would connect to this machine's server as the user)."""
    refused = sorted(set(parsed.query) - POSTGRES_OPTIONS)
    if refused:
        raise LabError(f"{where} sets {', '.join(shown(k) for k in refused[:5])} for the PostgreSQL client: "
                       "options that name files on this machine or server settings are not taken from a "
                       f"lab's settings (set {CATALOG_URL_ENV} to use them)")
    host = parsed.query.get("host", parsed.host or "")  # the query's host wins, as libpq reads it
    hosts = (host if isinstance(host, str) else ",".join(host)).split(",")
    if hosts == [""] and parsed.query.get("hostaddr"):
        hosts = []  # a server by its IP address alone: TCP
    if any(not h or h.startswith(("/", "@", "\\")) or re.match(r"[A-Za-z]:[\\/]", h) for h in hosts):
        raise LabError(f"{where} names no network host for the PostgreSQL server (a local socket would "
                       "connect to this machine's server as you); a lab's settings name a shared server by "
                       f"host name or address (set {CATALOG_URL_ENV} for a local one)")


@dataclass(frozen=True)
class LabDir:
    """One lab directory and its settings."""

    root: Path
    settings: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def open(cls, root: Path | str, *, create: bool = False) -> "LabDir":
        """Open the lab at *root*; with ``create=True`` make it first.

        Raises :class:`LabError` when the directory does not exist (and
        *create* is false), is not a directory, or its settings cannot be read.
        """
        path = Path(root).expanduser()
        if not path.exists():
            if not create:
                raise LabError(
                    f"lab directory {path} does not exist; create it with "
                    f"'echolab --lab {path} catalog init' or pass an existing --lab"
                )
            try:
                path.mkdir(parents=True)
            except OSError as exc:
                raise LabError(f"cannot create lab directory {path}: {exc.strerror}") from exc
        if not path.is_dir():
            raise LabError(f"lab path {path} is not a directory")
        path = path.resolve()
        settings: dict[str, Any] = {}
        settings_file = path / SETTINGS_FILE
        if settings_file.exists():
            settings = read_toml(settings_file, "lab settings", LabError)
        lab = cls(path, settings)
        if create or os.access(path, os.W_OK):
            try:
                for sub in SUBDIRS:
                    (path / sub).mkdir(exist_ok=True)
            except OSError as exc:
                raise LabError(f"cannot prepare lab directory {path}: {exc.strerror}") from exc
        return lab

    @property
    def captures_dir(self) -> Path:
        return self.root / "captures"

    @property
    def audio_dir(self) -> Path:
        return self.root / "audio"

    @property
    def prompts_dir(self) -> Path:
        return self.root / "prompts"

    @property
    def reports_dir(self) -> Path:
        return self.root / "reports"

    def report_dir(self, run_name: str) -> Path:
        """The folder of an analysis run's report, ``reports/RUN`` (a run name that cannot be a folder is refused)."""
        return self.reports_dir / safe_component(run_name, "run")

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def tmp_dir(self) -> Path:
        return self.root / "tmp"

    @property
    def catalog_url(self) -> str:
        """The SQLAlchemy URL of the catalog.

        ``ECHOLAB_CATALOG_URL`` wins, then ``catalog_url`` in echolab.toml,
        then a SQLite file in the lab directory. A SQLite file named by the
        settings must be inside the lab (a shared lab cannot point echolab at
        a database elsewhere on the machine).
        """
        from_env = os.environ.get(CATALOG_URL_ENV)
        url = from_env or self.settings.get("catalog_url")
        if not from_env and url is not None:
            url = self._checked_catalog_url(url)
        return url or f"sqlite:///{self.root / 'catalog.sqlite'}"

    def _checked_catalog_url(self, url: Any) -> str:
        """*url* from the lab's settings, when it keeps a SQLite catalog inside the lab.

        Any SQLite driver (``sqlite://``, ``sqlite+pysqlite://``...) must name a
        plain file inside the lab (a relative one is taken from the lab root)
        or an in-memory database; SQLite URI filenames (``file:...``,
        ``?uri=true``) are refused, since they can name any file. A PostgreSQL
        URL (a shared lab server) is kept as it is when it names the server by
        a network host (not a local socket, which would connect to this
        machine's server as the user) and its connection options are among
        :data:`POSTGRES_OPTIONS`: the others make the client read or write files
        on this machine (``passfile``, ``sslkey``, ``sslkeylogfile``,
        ``service``...) or set the server session's options. Other databases
        are refused.
        """
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        where = f"catalog_url in {self.root / SETTINGS_FILE}"
        if not isinstance(url, str):
            raise LabError(f"{where} must be a URL (text), not {url!r}")
        try:
            parsed = make_url(url)
            backend = parsed.get_backend_name()
        except (ArgumentError, ValueError, TypeError) as exc:
            raise LabError(f"{where} is not a database URL ({url!r}: {exc})") from None
        if backend == "postgresql":
            _check_postgres_url(parsed, where)
            return url
        if backend != "sqlite":
            raise LabError(f"{where} names a {backend} database; a lab's settings may name a SQLite file inside "
                           f"the lab or a PostgreSQL server (set {CATALOG_URL_ENV} for anything else)")
        if "uri" in parsed.query:
            raise LabError(f"{where} asks SQLite for a URI filename (uri=...); a lab's settings name a plain "
                           f"SQLite file inside the lab (or set {CATALOG_URL_ENV})")
        database = parsed.database
        if not database or database == ":memory:":
            return url
        if database.startswith("file:"):
            raise LabError(f"{where} names a SQLite URI filename ({database}); a lab's settings name a plain "
                           f"SQLite file inside the lab (or set {CATALOG_URL_ENV})")
        file = Path(database)
        if not is_inside(self.root / file, self.root):  # an absolute file replaces the root
            raise LabError(f"{where} names a SQLite file outside the lab ({database}); a lab's settings keep "
                           f"its catalog inside it (or set {CATALOG_URL_ENV})")
        if file.is_absolute():
            return url
        # SQLite would take a relative file from the working directory: take it from the lab root instead
        return parsed.set(database=str(self.root / file)).render_as_string(hide_password=False)

    def relative(self, path: Path) -> str:
        """*path* relative to the lab root, as stored in the catalog.

        Symbolic links inside the lab (a captures/ folder on a bigger disk) are
        kept as they are: only ``..`` and relative parts are normalized.
        """
        return Path(os.path.abspath(path)).relative_to(self.root).as_posix()

    def setting(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)


def default_lab_path() -> Path:
    return Path(os.environ.get(LAB_ENV) or DEFAULT_LAB)
