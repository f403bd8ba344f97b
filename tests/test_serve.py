"""`echolab catalog serve`: what a person sees in a real (headless) Chromium.

The server is the real command in a subprocess on a free loopback port, over a
catalog made by importing real captures; every expectation comes from the
catalog library (echolab.db.catalog, echolab.db.checks), not from typed numbers.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import select
import shutil
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterator
from urllib.parse import urljoin, urlsplit, urlunsplit

import pytest
from typer.testing import CliRunner

from echolab.db.catalog import Catalog
from echolab.db.checks import catalog_stats
from echolab.db.files import sha256_file
from echolab.db.records import AnalysisRun
from echolab.db.serve import ServeError, build_datasette, catalog_path
from echolab.db.transfer import import_captures
from echolab.cli import app
from echolab.labdir import CATALOG_URL_ENV, LabDir

CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
]
RUN_NAME = "baseline 2024"  # a space, so the report link must be URL-quoted
REPORT_MARKER = "Accuracy of the six classifiers"


# -- what the browser shows ------------------------------------------------------------


class Page(HTMLParser):
    """The parts of a Datasette page a person reads: table rows, facet counts, links."""

    def __init__(self, html: str):
        super().__init__()
        self.rows: list[dict[str, str]] = []
        self.cell_links: list[dict[str, str]] = []
        self.facets: dict[str, dict[str, int]] = {}
        self.links: list[tuple[str, str, str]] = []  # (href, text, class)
        self.text_parts: list[str] = []
        self._cell: str | None = None
        self._facet: str | None = None
        self._li: list[str] | None = None
        self._a: list[str] | None = None
        self._a_attrs: dict[str, str] = {}
        self._depth_facet = 0
        self.feed(html)

    @property
    def text(self) -> str:
        return " ".join(" ".join(self.text_parts).split())

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        classes = a.get("class", "").split()
        if tag == "tr":
            self.rows.append({})
            self.cell_links.append({})
        elif tag == "td" and self.rows:
            col = next((c[4:] for c in classes if c.startswith("col-")), None)
            self._cell = col
            if col is not None:
                self.rows[-1][col] = ""
        elif tag == "div" and "facet-info" in classes:
            self._facet = a.get("data-column")
            self.facets[self._facet or ""] = {}
        elif tag == "li" and self._facet:
            self._li = []
        elif tag == "a":
            self._a, self._a_attrs = [], a
            if self._cell is not None and self.rows:
                self.cell_links[-1][self._cell] = a.get("href", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "td":
            self._cell = None
        elif tag == "ul" and self._facet:
            self._facet = None
        elif tag == "li" and self._li is not None and self._facet:
            words = [w for w in " ".join(self._li).split() if w not in ("·", "✖")]  # a selected facet
            value, count = " ".join(words[:-1]), words[-1]
            self.facets[self._facet][value.strip()] = int(count)
            self._li = None
        elif tag == "a" and self._a is not None:
            self.links.append((self._a_attrs.get("href", ""), " ".join(self._a).strip(), self._a_attrs.get("class", "")))
            self._a = None

    def handle_data(self, data: str) -> None:
        text = data.strip()
        if not text:
            return
        self.text_parts.append(text)
        if self._cell is not None and self.rows:
            self.rows[-1][self._cell] = (self.rows[-1][self._cell] + " " + text).strip()
        if self._li is not None:
            self._li.append(text)
        if self._a is not None:
            self._a.append(text)

    def link(self, css_class: str) -> str:
        found = [href for href, _text, cls in self.links if css_class in cls.split()]
        assert found, f"no link of class {css_class}"
        return found[0]


TOKENS: dict[str, str] = {}  # host:port of a served catalog -> its token (printed once when it starts)


def _tokened(url: str) -> str:
    """*url* with the token of the catalog it points at, as a person opens the printed URL."""
    parts = urlsplit(url)
    token = TOKENS.get(parts.netloc)
    if token is None or "token=" in parts.query:
        return url
    return urlunsplit(parts._replace(query=f"{parts.query}&token={token}" if parts.query else f"token={token}"))


class Browser:
    """Headless Chromium: the DOM after load, and screenshots."""

    def __init__(self, binary: str, profile: Path):
        self.binary, self.profile = binary, profile

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [self.binary, *CHROMIUM_FLAGS, f"--user-data-dir={self.profile}", *args]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=60)

    def dom(self, url: str) -> Page:
        done = self._run("--dump-dom", _tokened(url))
        assert done.returncode == 0 and "<html" in done.stdout, done.stderr[-2000:]
        return Page(done.stdout)

    def screenshot(self, url: str, out: Path) -> Path:
        done = self._run("--window-size=1280,900", f"--screenshot={out}", _tokened(url))
        assert done.returncode == 0 and out.is_file(), done.stderr[-2000:]
        return out


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    token = TOKENS.get(urlsplit(url).netloc)
    cookie = {"Cookie": f"echolab_token={token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers={**cookie, **(headers or {})}),
                                    timeout=10) as resp:
            return resp.status, {k.lower(): v for k, v in resp.headers.items()}, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, {k.lower(): v for k, v in err.headers.items()}, err.read()


# -- the lab, the server and the browser -----------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Browser:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed (scripts/setup.sh installs it)")
    return Browser(binary, tmp_path_factory.mktemp("chromium-profile"))


def _fill_lab(lab: LabDir, class_folders: Path) -> None:
    """Imported captures, a collection campaign with a target and failures, one analysis run."""
    with Catalog.open(lab) as cat:
        report = import_captures(cat, class_folders, campaign="home")
        assert len(report.imported) == 4
        kitchen = cat.create_campaign("kitchen", backend="sim", target_per_class=3,
                                      classes=["weather", "music", "joke"])
        cat.add_capture(kitchen, "weather", class_folders / "weather" / "a.pcap")
        cat.add_capture(kitchen, "music", class_folders / "music" / "c.pcap")
        for label, reason in [("weather", "no-response: nothing heard for 8 s"), ("joke", "no-response: silence"),
                              ("joke", "speaker: device busy")]:
            cat.add_capture(kitchen, label, None, status="failed", reason=reason)
        with cat.transaction() as s:
            s.add(AnalysisRun(name=RUN_NAME, status="done", report_dir="reports/baseline-2024"))
    folder = lab.reports_dir / "baseline-2024"
    folder.mkdir(parents=True)
    (folder / "index.html").write_text(f"<html><body><h1>{REPORT_MARKER}</h1>"
                                       '<img src="accuracy.svg"></body></html>')
    (folder / "accuracy.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory, class_folders: Path) -> Iterator[tuple[LabDir, str]]:
    """(lab, base URL) of `echolab catalog serve` running on a free loopback port."""
    env = {k: v for k, v in os.environ.items() if k != CATALOG_URL_ENV}
    saved = os.environ.pop(CATALOG_URL_ENV, None)
    try:
        lab = LabDir.open(tmp_path_factory.mktemp("served") / "lab", create=True)
        _fill_lab(lab, class_folders)
    finally:
        if saved is not None:
            os.environ[CATALOG_URL_ENV] = saved
    port = _free_port()
    cmd = [sys.executable, "-P", "-m", "echolab.cli", "--lab", str(lab.root), "catalog", "serve", "--no-open",
           "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 30)
        line = proc.stdout.readline() if ready else ""  # printed once the server listens
        if f"at http://127.0.0.1:{port}/?token=" not in line:
            proc.terminate()
            pytest.fail(f"the server did not start: {line}{proc.communicate(timeout=10)[0]}")
        TOKENS[f"127.0.0.1:{port}"] = line.split("?token=")[1].split()[0]
        yield lab, f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- the pages ---------------------------------------------------------------------------


def test_captures_page_lists_captures_with_facet_counts(served: tuple[LabDir, str], browser: Browser,
                                                        tmp_path_factory: pytest.TempPathFactory) -> None:
    lab, base = served
    with Catalog.open(lab) as cat:
        expected = {str(c.id): (c.label, c.status, c.campaign.name) for c in cat.captures(status=None)}
    page = browser.dom(f"{base}/")
    page = browser.dom(urljoin(base, dict((t, h) for h, t, _c in page.links)["Captures"]))
    shown = {r["id"]: (r["label"], r["status"], r["campaign"]) for r in page.rows if "id" in r}
    assert shown == expected
    assert page.facets["label"] == dict(Counter(label for label, _s, _c in expected.values()))
    assert page.facets["status"] == dict(Counter(status for _l, status, _c in expected.values()))
    assert page.facets["campaign"] == dict(Counter(camp for _l, _s, camp in expected.values()))
    assert "alembic_version" not in browser.dom(f"{base}/catalog").text
    shot = browser.screenshot(f"{base}/catalog/capture_list", tmp_path_factory.mktemp("screens") / "captures.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    print(f"screenshot of the captures page: {shot}")


def test_capture_detail_page_downloads_its_pcap(served: tuple[LabDir, str], browser: Browser,
                                                class_folders: Path) -> None:
    lab, base = served
    listing = browser.dom(f"{base}/catalog/capture_list?label=weather&campaign=home")
    detail_hrefs = [links["id"] for links in listing.cell_links if "id" in links]
    assert len(detail_hrefs) == 2
    originals = {sha256_file(p) for p in (class_folders / "weather").iterdir()}
    for href in detail_hrefs:
        detail = browser.dom(urljoin(base, href))
        (row,) = [r for r in detail.rows if r]
        status, headers, body = fetch(urljoin(base, detail.link("pcap-download")))
        assert status == 200
        assert hashlib.sha256(body).hexdigest() == row["sha256"]
        assert row["sha256"] in originals
        suffix = Path(row["path"]).suffix
        assert headers["content-type"] == {".pcap": "application/vnd.tcpdump.pcap",
                                           ".pcapng": "application/x-pcapng"}[suffix]
        assert headers["content-disposition"] == f'attachment; filename="capture-{row["id"]}-weather{suffix}"'


def test_campaign_progress_counts_per_class(served: tuple[LabDir, str], browser: Browser) -> None:
    lab, base = served
    page = browser.dom(f"{base}/catalog/campaign_progress?campaign=kitchen")
    shown = {r["class"]: (int(r["ok"]), r["target"], int(r["failed"])) for r in page.rows if "class" in r}
    with Catalog.open(lab) as cat:
        stats = catalog_stats(cat, campaign="kitchen")
    assert shown == {c.label: (c.ok, str(c.target), c.failed) for c in stats.classes}
    assert shown["joke"][0] == 0  # a planned class without captures is listed
    every = browser.dom(f"{base}/catalog/campaign_progress")
    assert {r["campaign"] for r in every.rows if "campaign" in r} == {"home", "kitchen"}


def test_failures_by_reason(served: tuple[LabDir, str], browser: Browser) -> None:
    lab, base = served
    page = browser.dom(f"{base}/catalog/failures_by_reason")
    with Catalog.open(lab) as cat:
        expected = catalog_stats(cat).failures
    assert {r["reason"]: int(r["failures"]) for r in page.rows if "reason" in r} == expected


def test_analysis_runs_page_links_the_report(served: tuple[LabDir, str], browser: Browser) -> None:
    _lab, base = served
    page = browser.dom(f"{base}/catalog/analysis_runs")
    (row,) = [r for r in page.rows if r.get("name") == RUN_NAME]
    report = browser.dom(urljoin(base, page.link("report-link")))
    assert REPORT_MARKER in report.text
    status, headers, body = fetch(urljoin(base, page.link("report-link")).replace("index.html", "accuracy.svg"))
    assert status == 200 and headers["content-type"] == "image/svg+xml" and body.startswith(b"<svg")


def test_browsing_never_writes_the_catalog(served: tuple[LabDir, str]) -> None:
    lab, base = served
    path = catalog_path(lab)
    before = sha256_file(path)
    for url in ("/catalog/capture_list", "/catalog/campaign_progress", "/catalog/captures/1", "/-/pcap/1"):
        assert fetch(base + url)[0] == 200
    assert sha256_file(path) == before


# -- refusals, in-process -----------------------------------------------------------------


def test_file_routes_stay_inside_the_lab(sqlite_lab: LabDir, class_folders: Path, tmp_path: Path) -> None:
    with Catalog.open(sqlite_lab) as cat:
        import_captures(cat, class_folders, campaign="home")
        capture = cat.captures()[0]
        with cat.transaction() as s:
            s.add(AnalysisRun(name="outside", report_dir=str(tmp_path)))
            s.add(AnalysisRun(name="inside", report_dir="reports/inside"))
    (tmp_path / "index.html").write_text("secret")
    (sqlite_lab.reports_dir / "inside").mkdir()
    (sqlite_lab.reports_dir / "inside" / "index.html").write_text("ok")
    (sqlite_lab.reports_dir / "inside" / "leak.html").symlink_to(tmp_path / "index.html")
    client = build_datasette(sqlite_lab).client

    def status(url: str) -> int:
        return asyncio.run(client.get(url)).status_code

    assert status(f"/-/pcap/{capture.id}") == 200
    assert status("/-/pcap/999") == 404
    assert asyncio.run(client.get("/-/reports/inside/")).text == "ok"
    for url in ("/-/reports/outside/index.html", "/-/reports/inside/..%2F..%2Fcatalog.sqlite",
                "/-/reports/inside/%2e%2e/%2e%2e/catalog.sqlite", "/-/reports/inside/leak.html"):
        assert status(url) == 403, url
    with Catalog.open(sqlite_lab) as cat, cat.transaction():
        cat.get_capture(capture.id).path = "catalog.sqlite"  # a row pointing outside captures/
    assert status(f"/-/pcap/{capture.id}") == 403


def test_postgresql_catalog_is_refused_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(CATALOG_URL_ENV, "postgresql+psycopg://lab@127.0.0.1:1/echolab")
    LabDir.open(tmp_path / "lab", create=True)
    result = CliRunner().invoke(app, ["--lab", str(tmp_path / "lab"), "catalog", "serve", "--no-open"])
    assert result.exit_code == 1
    assert result.output.startswith("Error: the browser view needs a SQLite catalog, and this lab's is postgresql;")
    assert "catalog export" in result.output and len(result.output.strip().splitlines()) == 1


def test_missing_catalog_and_busy_port(sqlite_lab: LabDir) -> None:
    with pytest.raises(ServeError, match="no catalog at .*catalog init"):
        catalog_path(sqlite_lab)
    Catalog.open(sqlite_lab).close()
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        result = CliRunner().invoke(app, ["--lab", str(sqlite_lab.root), "catalog", "serve", "--no-open",
                                          "--port", str(port)])
    assert result.exit_code == 1
    assert result.output == f"Error: cannot listen on 127.0.0.1:{port} (Address already in use); pick another with --port\n"


# -- on the network: a token, or an explicit --no-auth ------------------------------------------


def _start(lab: LabDir, *args: str) -> tuple[subprocess.Popen, list[str]]:
    """`catalog serve` in a subprocess; returns it and the lines it printed on start."""
    env = {k: v for k, v in os.environ.items() if k != CATALOG_URL_ENV}
    proc = subprocess.Popen([sys.executable, "-P", "-m", "echolab.cli", "--lab", str(lab.root), "catalog", "serve",
                             "--no-open", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 30)
    if not ready:
        proc.terminate()
        pytest.fail(f"the server did not start: {proc.communicate(timeout=10)[0]}")
    return proc, [proc.stdout.readline(), proc.stdout.readline()]  # printed together once it listens


def test_a_non_loopback_bind_refuses_requests_without_the_token(served: tuple[LabDir, str],
                                                                browser: Browser) -> None:
    lab, _base = served
    port = _free_port()
    proc, lines = _start(lab, "--host", "0.0.0.0", "--port", str(port))
    try:
        assert f"at http://0.0.0.0:{port}/?token=" in lines[0], lines
        assert "every request needs the token in the URL above" in lines[1]
        token = lines[0].split("?token=")[1].split()[0]
        local = f"http://127.0.0.1:{port}"
        refused = browser.dom(f"{local}/catalog/capture_list")
        assert "403: this catalog needs its token" in refused.text and not refused.rows
        assert fetch(f"{local}/-/pcap/1")[0] == 403
        assert fetch(f"{local}/catalog/capture_list?token=wrong")[0] == 403
        with Catalog.open(lab) as cat:
            expected = {str(c.id) for c in cat.captures(status=None)}
        page = browser.dom(f"{local}/catalog/capture_list?token={token}")
        assert {r["id"] for r in page.rows if "id" in r} == expected
        class NoRedirect(urllib.request.HTTPRedirectHandler):
            def redirect_request(self, *args, **kwargs):  # noqa: ANN002, ANN003 - see the 302 itself
                return None

        try:
            urllib.request.build_opener(NoRedirect).open(f"{local}/catalog/capture_list?label=weather&token={token}")
        except urllib.error.HTTPError as moved:
            assert moved.code == 302 and moved.headers["location"] == "/catalog/capture_list?label=weather"
            assert moved.headers["set-cookie"].startswith(f"echolab_token={token};")
        request = urllib.request.Request(f"{local}/-/pcap/1", headers={"Cookie": f"echolab_token={token}"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            assert resp.status == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    port = _free_port()
    proc, lines = _start(lab, "--host", "0.0.0.0", "--port", str(port), "--no-auth")
    try:
        assert lines[0].rstrip().endswith(f"at http://0.0.0.0:{port}/ (read-only; Ctrl-C stops)"), lines
        assert "No token (--no-auth): anyone who can reach" in lines[1]
        assert fetch(f"http://127.0.0.1:{port}/catalog/capture_list")[0] == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


# -- on loopback: a token too, and only requests for its own name -----------------------------------


def _plain_fetch(url: str, headers: dict[str, str]) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code


def test_loopback_needs_the_token_and_answers_only_its_own_host_names(served: tuple[LabDir, str]) -> None:
    """DNS rebinding: a page on attacker.example that resolves to 127.0.0.1 reads nothing."""
    _lab, base = served
    port = urlsplit(base).port
    token = TOKENS[urlsplit(base).netloc]
    cookie = {"Cookie": f"echolab_token={token}"}
    paths = ["/catalog/captures.json", "/catalog.json?sql=select+sha256+from+captures", "/-/pcap/2"]
    for path in paths:
        assert _plain_fetch(base + path, {}) == 403  # no token: nothing, even from this machine
        assert _plain_fetch(base + path, {**cookie, "Host": f"attacker.example:{port}"}) == 400
        assert _plain_fetch(base + path, {"Host": f"attacker.example:{port}"}) == 400
        assert _plain_fetch(base + path, {**cookie, "Host": f"localhost:{port}"}) == 200
        assert _plain_fetch(base + path, cookie) == 200
