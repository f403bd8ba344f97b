"""``echolab.Lab``: the front door of the library, which the command line and the demo call.

A :class:`Lab` opens a lab directory and its catalog once and offers every job
a lab user does, each as one typed method with a typed result: import captures
(cutting long ones into requests), preview a cut, build and read feature
tables, run the classifier comparison and write its report, train a model file,
classify long captures or live traffic, collect, and export. The command line
(``echolab.cli``) parses options, calls one of these methods and prints; so
does a notebook. Nothing here prints or draws on screen: long work reports
through an optional ``progress`` callback (:mod:`echolab.progress`). Nothing
here imports typer or rich, and importing this module loads no heavy library;
scikit-learn, matplotlib and pandas load when a method needs them.

::

    from echolab import Lab

    with Lab("lab") as lab:
        print(lab.stats())
        X, y, names = lab.features("combined")
        result = lab.compare(features=["combined"], models=["random_forest"], trials=5)
        print(lab.report(result))
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterable, Iterator, Sequence

from echolab.labdir import LabDir
from echolab.progress import ProgressCallback

if TYPE_CHECKING:  # imported for type checkers only; the real imports happen where they are used
    import numpy as np
    import pandas as pd

    from echolab.analysis.compare.classify import CaptureOutcome, Prediction
    from echolab.analysis.compare.defenses import DefenseComparison
    from echolab.analysis.compare.modelfile import TrainedModel
    from echolab.analysis.compare.scoring import Score
    from echolab.captures.quality import CutChecksReport
    from echolab.analysis.compare.runner import RunResult
    from echolab.analysis.compare.specs import FeatureSpec
    from echolab.analysis.defenses.dataset import DefendReport
    from echolab.analysis.features.store import BuildReport
    from echolab.captures.cut import SplitResult
    from echolab.captures.quality import CutChecksReport, CutVerdict
    from echolab.captures.spec import SplitSpec
    from echolab.collector.campaign import CollectResult, CollectSettings
    from echolab.collector.collect import Display
    from echolab.collector.watch import LiveRequest
    from echolab.db.catalog import Catalog
    from echolab.db.checks import CatalogStats, VerifyReport
    from echolab.db.records import AnalysisRun, Campaign, Capture
    from echolab.db.bulk import BulkChange, BulkFilter
    from echolab.db.labels import LabelMap, LabelPreview, Relabelled
    from echolab.db.selection import Selected, Selection
    from echolab.db.transfer import ImportItem, ImportReport

@dataclass
class FeatureTable:
    """One feature set's table: a row per usable capture, the fitted transformer's columns."""

    X: "np.ndarray"
    y: "np.ndarray"
    names: list[str]
    capture_ids: list[int]
    campaigns: list[str]
    skipped: list[tuple[int, str]]

    def __iter__(self) -> Iterator[object]:  # ``X, y, names = lab.features(...)``
        return iter((self.X, self.y, self.names))


@dataclass
class FolderCut:
    """A cut previewed on every capture of a folder: one row a file (requests, settings, why)."""

    folder: Path
    rows: list[dict[str, object]]
    expect: int | None = None
    checks: "CutChecksReport | None" = None  # the cut checks of the files, judged together as one campaign

    @property
    def as_expected(self) -> int:
        """Files holding the count of requests expected."""
        return sum(1 for r in self.rows if r["requests"] == self.expect)


@dataclass
class TrainResult:
    """A trained model and the file it was written to."""

    model: "TrainedModel"
    path: Path


@dataclass
class Classification:
    """Long captures cut into requests and classified: one outcome per capture, every prediction."""

    model: "TrainedModel"
    outcomes: list["CaptureOutcome"]
    speed: float = 1.0
    expect: int | None = None
    checks: "CutChecksReport | None" = None  # the cuts judged together (None: no capture was cut)

    @property
    def suspect(self) -> list["CaptureOutcome"]:
        """Captures whose cut the checks find suspect (each outcome's ``check`` says why), as import lists them."""
        return [o for o in self.outcomes if o.check != "ok"]

    def checks_summary(self) -> str:
        """One line, as import's: suspect files, and the trailing bursts attached."""
        return self.checks.summary() if self.checks is not None else "cut checks: no capture cut"

    @property
    def not_as_expected(self) -> list["CaptureOutcome"]:
        """Captures whose cut did not find the requests expected (``expect``), as import reports them."""
        return [o for o in self.outcomes if o.as_expected is False]

    def score(self, *, truth: Path | str | None = None, label_from: str | None = None) -> "Score":
        """The predictions scored against each file's label: from a manifest CSV (*truth*: ``file,label``
        rows) or the file names (*label_from*, a regular expression as ``catalog import --label-from``)."""
        from echolab.analysis.compare.scoring import score, truth_of

        found = truth_of([o.source for o in self.outcomes], manifest=truth, label_from=label_from)
        return score(self.outcomes, found, expect=self.expect)

    @property
    def predictions(self) -> list["Prediction"]:
        return [p for o in self.outcomes for p in o.predictions]

    def counts(self) -> dict[str, int]:
        """Requests per predicted class, most frequent first."""
        from echolab.analysis.compare.classify import summary

        return summary(self.predictions)

    def timeline(self, out: Path | str) -> Path:
        """Draw the requests on a time axis by predicted class, with counts per hour: OUT.png or OUT.html."""
        from echolab.analysis.compare.classify import plot_timeline

        predictions = self.predictions
        return plot_timeline(predictions, out, classes=self.model.classes, speed=self.speed,
                             title=f"{len(predictions)} requests classified by {self.model.model_name} "
                                   f"on {self.model.feature_key}")


@dataclass
class LiveClassification:
    """What a live watch saw: each request (or why it gave no features) and the bursts set aside."""

    interface: str
    device_ip: str
    requests: list["LiveRequest"] = field(default_factory=list)
    set_aside: int = 0

    def counts(self) -> Counter[str]:
        return Counter(r.label for r in self.requests if not r.error)

    def latencies_s(self) -> list[float]:
        """Seconds from each request's last packet to its prediction."""
        return [r.latency_s for r in self.requests]

    def median_latency_s(self) -> float | None:
        from statistics import median

        latencies = self.latencies_s()
        return median(latencies) if latencies else None


class Lab:
    """A lab directory with its catalog, opened once.

    ``Lab(path)`` opens an existing lab; ``Lab(path, create=True)`` makes one.
    Use it as a context manager, or call :meth:`close`, to release the catalog.
    """

    def __init__(self, root: LabDir | Path | str = "lab", *, create: bool = False,
                 catalog_url: str | None = None) -> None:
        self.dir: LabDir = root if isinstance(root, LabDir) else LabDir.open(root, create=create)
        self._catalog_url = catalog_url
        self._catalog: Catalog | None = None

    # -- the lab and its catalog -----------------------------------------------------------

    @property
    def root(self) -> Path:
        return self.dir.root

    @property
    def catalog(self) -> "Catalog":
        """The open catalog (opened on first use, migrations applied)."""
        if self._catalog is None:
            from echolab.db.catalog import Catalog

            self._catalog = Catalog.open(self.dir, self._catalog_url)
        return self._catalog

    def close(self) -> None:
        if self._catalog is not None:
            self._catalog.close()
            self._catalog = None

    def __enter__(self) -> "Lab":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Lab({str(self.root)!r})"

    # -- captures --------------------------------------------------------------------------

    def captures(self, *, label: str | None = None, campaign: str | int | None = None,
                 status: str | None = "ok", since: datetime | None = None,
                 until: datetime | None = None) -> list["Capture"]:
        """Catalogued captures matching every given filter, oldest first (default: the good ones;
        ``status=None``: all); *since*/*until* bound their start time."""
        return self.catalog.captures(label, campaign, status, since, until)

    @staticmethod
    def selection(*, campaigns: str | int | Iterable[str | int] | None = None,
                  labels: str | Iterable[str] | None = None, exclude_labels: str | Iterable[str] | None = None,
                  min_per_class: int | None = None, kind: str | None = None,
                  status: str | None = "ok") -> "Selection":
        """The captures a job reads (:class:`echolab.db.selection.Selection`), which :meth:`compare`,
        :meth:`train`, :meth:`export`, :meth:`features` and :meth:`select` take."""
        from echolab.db.selection import Selection

        return Selection.of(campaigns=campaigns, labels=labels, exclude_labels=exclude_labels,
                            min_per_class=min_per_class, kind=kind, status=status)

    def select(self, selection: "Selection | None" = None) -> "Selected":
        """The captures *selection* names, and the classes its ``min_per_class`` left out."""
        from echolab.db.selection import EVERYTHING, select

        return select(self.catalog, selection or EVERYTHING)

    def capture(self, capture_id: int) -> "Capture":
        """One catalogued capture by id."""
        return self.catalog.get_capture(capture_id)

    def discard(self, capture_id: int, reason: str) -> "Capture":
        """Exclude a capture from analysis, keeping it and *reason* for the audit trail."""
        return self.catalog.discard(capture_id, reason)

    def select_bulk(self, ids: Sequence[int] = (), *, campaign: str | None = None, labels: Sequence[str] = (),
               source: str | None = None, status: str | None = None, check: str | None = None) -> list["Capture"]:
        """Captures chosen in bulk: by id, campaign, label, source file (a shell pattern such as
        ``*home2*``), status, or cut check (``ok``/``suspect``); every filter given must hold."""
        from echolab.db.bulk import bulk_filter, select_bulk

        return select_bulk(self.catalog, bulk_filter(ids, campaign=campaign, labels=labels, source=source,
                                                     status=status, check=check))

    def discard_many(self, reason: str, ids: Sequence[int] = (), *, campaign: str | None = None,
                     labels: Sequence[str] = (), source: str | None = None, status: str | None = None,
                     check: str | None = None) -> "BulkChange":
        """Discard every capture :meth:`select_bulk` gives (kept with *reason*, left out of analysis), at once."""
        from echolab.db.bulk import bulk_filter, discard_selected

        return discard_selected(self.catalog, bulk_filter(ids, campaign=campaign, labels=labels, source=source,
                                                        status=status, check=check), reason)

    def restore(self, ids: Sequence[int] = (), *, campaign: str | None = None, labels: Sequence[str] = (),
                source: str | None = None, check: str | None = None) -> "BulkChange":
        """Make discarded captures :meth:`select_bulk` gives ``ok`` again."""
        from echolab.db.bulk import bulk_filter, restore_selected

        return restore_selected(self.catalog, bulk_filter(ids, campaign=campaign, labels=labels, source=source,
                                                        check=check))

    def relabel(self, ids: Sequence[int] = (), *, campaign: str | None = None, labels: Sequence[str] = (),
                source: str | None = None, to: str | None = None, match: str | None = None,
                label_map: "Path | str | LabelMap | None" = None, label_from: str | None = None,
                dry_run: bool = False) -> "Relabelled":
        """New labels for catalogued captures, one way at a time (see :func:`echolab.db.labels.relabel`).

        ``lab.relabel([3, 4], to="weather")``; ``lab.relabel(labels=["wether"], to="weather")``;
        ``lab.relabel(match="untill", to="until")`` (a regular expression on labels);
        ``lab.relabel(label_map="aliases.csv")`` (``from,to[,campaign]`` rows);
        ``lab.relabel(label_from=r"^(?P<label>.+?)_\d+\.pcap")`` (the file names read again). Runs that
        used a relabelled capture are marked stale; *dry_run* writes nothing.
        """
        from echolab.db.labels import LabelMap, read_label_map, relabel
        from echolab.db.bulk import bulk_filter

        mapping = label_map if isinstance(label_map, LabelMap) or label_map is None else read_label_map(label_map)
        return relabel(self.catalog, bulk_filter(ids, campaign=campaign, labels=labels, source=source), to=to,
                       match=match, label_map=mapping, label_from=label_from, dry_run=dry_run)

    @staticmethod
    def preview_labels(source: Path | str | Sequence[Path], pattern: str) -> "LabelPreview":
        """The labels *pattern* gives the file names of a folder (or of the files given), and a warning when
        they look wrong (many files unmatched, labels that are numbers, many files in few labels)."""
        from echolab.db.labels import preview_labels
        from echolab.db.transfer import scan_folder

        if isinstance(source, (str, Path)):
            source = Path(source)
            paths = scan_folder(source)[0] if source.is_dir() else [source]
        else:
            paths = list(source)
        return preview_labels(paths, pattern)

    def verify(self, *, hash_files: bool = True) -> "VerifyReport":
        """Check every catalogued file exists (and, with *hash_files*, matches its sha256), and find
        files the catalog does not know or that an interrupted write left."""
        from echolab.db.checks import verify

        return verify(self.catalog, hash_files=hash_files)

    def campaigns(self) -> list["Campaign"]:
        """The catalog's campaigns, oldest first."""
        return self.catalog.campaigns()

    def capture_path(self, capture: "Capture") -> Path | None:
        """Where a capture's file lies (``None`` if the catalog points at no file)."""
        return self.catalog.abspath(capture)

    def stats(self, *, campaign: str | None = None, target: int | None = None) -> "CatalogStats":
        """Counts per class and status, and per campaign (what ``catalog stats`` shows); *target*
        per class defaults to the campaigns'."""
        from echolab.db.checks import catalog_stats

        return catalog_stats(self.catalog, campaign=campaign, target=target)

    def import_captures(self, source: Path | str, *, manifest: Path | str | None = None, campaign: str | None = None,
                        device_ip: str | None = None, location: str | None = None, label_from: str | None = None,
                        cut: "str | SplitSpec | None" = None, expect: int | None = None, replace: bool = False,
                        on_item: Callable[["ImportItem"], None] | None = None,
                        progress: ProgressCallback | None = None,
                        aliases: "Path | str | LabelMap | None" = None) -> "ImportReport":
        """Import captures: class folders, a CSV manifest, an exported tar, one capture or packet trace.

        The report lists what was imported and, with why, what was not: files
        of the folder that are not captures (``skipped``), captures refused
        (``rejected``), files cut short (``cut_short``) and files imported whole
        that look like long captures wanting a cut (``long``). *progress* hears
        ``("importing", files done, files)`` (with a cut, ``"reading"`` and
        ``"cutting"`` first). *aliases* (a label map, see
        :meth:`relabel`) renames labels as they come in.

        With *cut* (``auto``, ``gap=SECONDS``, ... or :meth:`cut_spec`), each
        file is a long capture cut into one capture per request first;
        *expect* is how many requests each should hold, and *replace* swaps an
        earlier, different cut of the same source for this one. See
        :func:`echolab.db.transfer.import_captures`.
        """
        from echolab.db.labels import LabelMap, read_label_map
        from echolab.db.transfer import import_captures

        mapping = aliases if isinstance(aliases, LabelMap) or aliases is None else read_label_map(aliases)
        return import_captures(self.catalog, Path(source), manifest=Path(manifest) if manifest else None,
                               campaign=campaign, device_ip=device_ip, location=location, on_item=on_item,
                               label_from=label_from, cut=_cut(cut) if cut is not None else None,
                               expect=expect, replace=replace, progress=progress, aliases=mapping)

    def export(self, out: Path | str, *, label: str | None = None, campaign: str | None = None,
               status: str | None = "ok", selection: "Selection | None" = None) -> int:
        """Write a manifest (``.csv``/``.json``) or a tar of captures plus manifest; returns the count.

        *selection* (:meth:`selection`) chooses the captures; *label*, *campaign* and *status* narrow it."""
        from echolab.db.selection import EVERYTHING, Selection, select
        from echolab.db.transfer import export_catalog

        chosen = (selection or EVERYTHING).narrowed(Selection.of(campaigns=campaign, labels=label, status=status))
        return export_catalog(self.catalog, Path(out), select(self.catalog, chosen).captures)

    # -- cutting long captures into requests -----------------------------------------------

    @staticmethod
    def cut_spec(text: str = "auto", *, min_packets: int | None = None, min_bytes: int | None = None,
                 attach_trailing: float | None = None, speed: float = 1.0) -> "SplitSpec":
        """A cut parsed from text: ``auto``, ``gap=SECONDS``, ``every=SECONDS`` or ``times=FILE``.

        *min_packets* / *min_bytes*: a burst smaller than either is a keep-alive
        (default: the captures layer's); *attach_trailing*: seconds after a
        request within which a short burst is attached to it; *speed*: the
        capture was played this many times faster than the household's clock.
        """
        from echolab.captures.spec import SplitSpec

        sizes = {k: v for k, v in (("min_packets", min_packets), ("min_bytes", min_bytes)) if v is not None}
        return SplitSpec.parse(text, attach_trailing=attach_trailing, speed=speed, **sizes)

    @staticmethod
    def preview_cut(capture: Path | str, cut: "str | SplitSpec" = "auto", *, device_ip: str | None = None,
                    expect: int | None = None) -> "SplitResult":
        """How one long capture (also ``NAME.pcap.gz``) would be cut into requests (nothing is imported; no
        catalog needed)."""
        from echolab.captures.compressed import is_gzip_capture, unpacked
        from echolab.captures.cut import split_capture

        capture = Path(capture)
        if not is_gzip_capture(capture):
            return split_capture(capture, _cut(cut), device_ip, expect=expect)
        with unpacked(capture) as plain:
            result = split_capture(plain.path, _cut(cut), device_ip, expect=expect)
        result.timeline.path = capture
        return result

    @staticmethod
    def preview_cut_folder(folder: Path | str, cut: "str | SplitSpec" = "auto", *,
                           device_ip: str | None = None, expect: int | None = None) -> FolderCut:
        """:meth:`preview_cut` on each capture of *folder*: a row a file, or why it cannot be cut."""
        from echolab.captures.reader import CaptureError
        from echolab.captures.spec import SplitError
        from echolab.captures.compressed import is_gzip_capture
        from echolab.db.files import is_capture_name

        from echolab.captures.quality import check_cuts

        folder, spec = Path(folder), _cut(cut)
        rows: list[dict[str, object]] = []
        results = []
        for path in sorted(p for p in folder.rglob("*") if p.is_file() and (is_capture_name(p) or is_gzip_capture(p))):
            try:
                result = Lab.preview_cut(path, spec, device_ip=device_ip, expect=expect)
                results.append(result)
                row = result.summary()
            except (CaptureError, SplitError) as exc:
                row = {"file": str(path), "requests": None, "expected": expect, "set_aside": None, "attached": None,
                       "settings": None, "why": str(exc)}
            row["file"] = str(path.relative_to(folder))
            rows.append(row)
        checks = check_cuts(results)
        verdicts = iter(checks.verdicts)
        for row in rows:
            row["check"] = next(verdicts).text if row["requests"] is not None else None
        return FolderCut(folder, rows, expect, checks)

    @staticmethod
    def check_cut(result: "SplitResult") -> "CutVerdict":
        """The checks of one previewed cut, judged alone (:mod:`echolab.captures.quality`): ``ok`` or why it is
        suspect."""
        from echolab.captures.quality import check_cuts

        return check_cuts([result]).verdicts[0]

    @staticmethod
    def plot_cut(result: "SplitResult", out: Path | str, *, bin_s: float | None = None) -> Path:
        """Draw a previewed cut (the device's traffic on a time axis, each request marked) to a PNG."""
        from echolab.analysis.compare.cutplot import plot_segments

        return plot_segments(result, Path(out), bin_s=bin_s)

    # -- features --------------------------------------------------------------------------

    def build_features(self, *, device_ip: str | None = None, jobs: int = 2, rebuild: bool = False,
                       progress: ProgressCallback | None = None) -> "BuildReport":
        """Extract and cache every capture's features that are not cached yet; returns the build report."""
        from echolab.analysis.features.store import build_features

        return build_features(self.catalog, device_ip=device_ip, n_jobs=jobs, rebuild=rebuild, progress=progress)

    def features(self, set_name: "str | FeatureSpec" = "combined", *, device_ip: str | None = None,
                 progress: ProgressCallback | None = None, selection: "Selection | None" = None) -> FeatureTable:
        """One feature set as arrays: ``X, y, names = lab.features("tcptrace")``.

        *set_name* is a set with its options as ``analyze run -f`` takes it
        (``histogram:bins=25,include_acks=true``). The set's transformer
        (histogram edges, constant columns) is fitted on every usable capture,
        as the study does. *selection* (:meth:`selection`) chooses the captures.
        """
        from echolab.analysis.features.sets import FeatureError, load_dataset, make_transformer

        name, options = _feature(set_name)
        captures = self.select(selection).captures if selection is not None else None
        data = load_dataset(self.catalog, device_ip=device_ip, progress=progress, captures=captures)
        if not len(data):
            raise FeatureError("no usable captures in the catalog: collect or import some, then build features")
        transformer = make_transformer(name, **options).fit(data.records)
        return FeatureTable(X=transformer.transform(data.records), y=data.y,
                            names=list(transformer.get_feature_names_out()), capture_ids=list(data.capture_ids),
                            campaigns=list(data.campaigns), skipped=list(data.skipped))

    def feature_columns(self, set_name: "str | FeatureSpec", report: "BuildReport") -> tuple[list[str], list[str]]:
        """The columns of a set fitted on a build's records, and those it dropped as constant."""
        from echolab.analysis.features.sets import make_transformer

        name, options = _feature(set_name)
        transformer = make_transformer(name, **options).fit(list(report.records.values()))
        dropped = getattr(transformer, "dropped_features_", None) or getattr(
            getattr(transformer, "tcptrace_", None), "dropped_features_", [])
        return list(transformer.get_feature_names_out()), list(dropped)

    def feature_frame(self, set_name: "str | FeatureSpec" = "combined", *, device_ip: str | None = None,
                      progress: ProgressCallback | None = None,
                      selection: "Selection | None" = None) -> "pd.DataFrame":
        """One feature set as a pandas DataFrame (capture_id, sha256, campaign, label, features).

        Needs pandas (the ``parquet`` extra)."""
        from echolab.errors import require

        require("pandas", "parquet", "feature tables as DataFrames")
        from echolab.analysis.features.store import feature_table

        name, options = _feature(set_name)
        captures = self.select(selection).captures if selection is not None else None
        return feature_table(self.catalog, set_name=name, device_ip=device_ip, progress=progress, captures=captures,
                             **options)

    def export_features(self, out: Path | str, set_name: "str | FeatureSpec" = "combined", *, fmt: str = "csv",
                        device_ip: str | None = None, progress: ProgressCallback | None = None,
                        selection: "Selection | None" = None) -> int:
        """Write the feature table as CSV or Parquet (rows written); the ``sequence`` set as a folder of
        time,size,direction files (files written). *selection* (:meth:`selection`) chooses the captures."""
        from echolab.analysis.features.store import export_features

        name, options = _feature(set_name)
        captures = self.select(selection).captures if selection is not None else None
        return export_features(self.catalog, out, fmt=fmt, set_name=name, device_ip=device_ip, progress=progress,
                               captures=captures, **options)

    # -- the comparison and its report -------------------------------------------------------

    def compare(self, *, features: Sequence["str | FeatureSpec"] | None = None, models: Sequence[str] = (),
                trials: int | None = None, seed: int = 0, split_by: str = "random", fit_features_on: str = "all",
                grids: Path | str | None = None, bins_sweep: Sequence[int] = (), ablations: bool = False,
                name: str | None = None, device_ip: str | None = None, campaigns: Sequence[str | int] = (),
                synthetic: int | None = None, jobs: int | None = None, cluster: str | None = None,
                adapt: str = "none", adapt_by: str = "campaign",
                monitored: Sequence[str] = (), threshold_target: str = "precision=0.9",
                selection: "Selection | None" = None, drop_unsplittable: bool = False,
                progress: ProgressCallback | None = None) -> "RunResult":
        """Run (or resume) the classifier comparison on the catalog's captures.

        *features* are feature sets as ``analyze run -f`` takes them (default:
        the study's three); *bins_sweep* adds the histogram set at these bin
        counts with and without ACKs (Table I), *ablations* the study's
        feature-group ablations. *models* are names from the grids file
        (default: the study's six). *trials* random (or grouped) splits, 100
        by default; a split mode that leaves one group out per trial (``day``,
        ``campaign``, ``device``, ``location``) makes one trial per group and
        refuses *trials*. *selection* (:meth:`selection`) chooses the captures,
        *campaigns* (names or ids, e.g. a defended one) narrow it; unless
        campaigns are named, the defended captures are left out.
        *drop_unsplittable* leaves out classes that lie in only one group of
        *split_by* (the run's notes say which). *synthetic* uses N synthetic
        captures per class instead of the catalog. *adapt* adapts the features to each
        home without labels (``standardize``, ``quantile`` or ``coral``, see
        :mod:`echolab.analysis.compare.adapt`), the homes being the groups of
        *adapt_by* (campaigns by default); the report names it. With *monitored*
        classes the run scores an open world too: the monitored classes against
        every other class, the others held out by class, each trial's threshold
        chosen on its training part for *threshold_target* (``precision=P`` or
        ``fpr=F``; docs/open-world.md). Finished trials are cached in the
        catalog, so a rerun costs only what changed. Without a *name*, an
        unchanged rerun (the same settings, data and library versions) is the
        newest such stored run, returned as it is (``result.unchanged``).
        Returns the stored run and its counts.
        """
        from echolab.analysis.compare import specs as asked
        from echolab.analysis.compare.runner import run_analysis
        from echolab.analysis.compare.sources import catalog_source
        from echolab.analysis.compare.splits import check_trials_option

        check_trials_option(split_by, trials)

        specs = [_spec(f) for f in features] if features else list(asked.study_features())
        if bins_sweep:
            specs += [s for s in asked.bins_sweep(bins_sweep) if s not in specs]
        if ablations:
            specs += [s for s in asked.ablation_features() if s not in specs]
        settings = asked.RunSettings(features=tuple(specs), models=tuple(models),
                                     trials=trials if trials is not None else asked.RunSettings.trials, seed=seed,
                                     split_by=split_by, fit_features_on=fit_features_on,
                                     grids_path=str(grids) if grids else None, adapt=adapt, adapt_by=adapt_by,
                                     monitored=tuple(monitored), threshold_target=threshold_target,
                                     drop_unsplittable=drop_unsplittable)
        if synthetic:
            from echolab.analysis.compare.synthetic import synthetic_source

            if selection is not None and not selection.everything:
                raise asked.AnalysisError("synthetic captures are made for the run: a selection does not apply to "
                                          "them (leave out the campaigns, labels, kind and minimum per class)")

            source = synthetic_source(synthetic, seed=seed)
        else:
            source = catalog_source(self.catalog, device_ip=device_ip, progress=progress, campaigns=campaigns,
                                    selection=selection)
        return run_analysis(self.catalog, source, settings, name=name, jobs=jobs, cluster=cluster, progress=progress)

    def runs(self) -> list["AnalysisRun"]:
        """Stored comparison runs, newest first."""
        return self.catalog.analysis_runs()

    def run(self, name_or_id: str | int) -> "AnalysisRun":
        """One stored comparison run by name or id (the noun: this fetches, it computes nothing)."""
        from echolab.db.catalog import UnknownRunError

        try:
            return self.catalog.analysis_run(name_or_id)
        except UnknownRunError as exc:
            raise UnknownRunError(str(exc), hint="'echolab analyze ls' lists the runs") from exc

    def report(self, run: "RunResult | AnalysisRun | str | int", out: Path | str | None = None, *,
               force: bool = False) -> Path:
        """Write a run's report (index.html, summary.md, plots); returns the HTML page's path.

        *out* defaults to ``LAB/reports/RUN``, which the catalog then records;
        *force* writes it again even where it is up to date.
        """
        from echolab.analysis.compare.report import write_report

        stored = run if isinstance(run, (str, int)) else getattr(run, "run", run)
        if isinstance(stored, (str, int)):
            stored = self.run(stored)
        path = write_report(stored, Path(out) if out else self.dir.report_dir(stored.name), force=force)
        if out is None:
            self.catalog.set_report_dir(stored, path.parent)
        return path

    # -- model files and classification ------------------------------------------------------

    def train(self, out: Path | str, *, features: str = "combined", model: str = "random_forest",
              campaigns: Sequence[str | int] = (), seed: int = 0, grids: Path | str | None = None,
              device_ip: str | None = None, adapt: str = "none", reject: str | None = None,
              unmonitored: Sequence[str] = (), selection: "Selection | None" = None,
              progress: ProgressCallback | None = None) -> TrainResult:
        """Fit one model on the chosen campaigns' captures (all when none; its grid search on all of them)
        and write it to the model file *out*. *features* is a set with its options (``histogram:bins=25``);
        *selection* (:meth:`selection`) chooses the captures, *campaigns* narrow it.
        *adapt* (``standardize`` or ``quantile``) adapts each campaign's features within that campaign, and
        the model then adapts the requests it classifies together, as one home.

        *unmonitored* classes are learned as one class, ``unmonitored``, whose
        requests classify calls ``unknown``; *reject* (``precision=P`` or
        ``fpr=F``) gives the model a reject option: a threshold chosen on the
        training captures, kept in the file's header, under which a request is
        ``unknown`` (:mod:`echolab.analysis.compare.reject`; an ``fpr=`` target
        needs unmonitored classes)."""
        from echolab.analysis.compare.modelfile import campaign_source, save_model, train_model

        if selection is not None:
            from echolab.analysis.compare.sources import catalog_source
            from echolab.db.selection import Selection

            chosen = selection.narrowed(Selection.of(campaigns=campaigns))
            source = catalog_source(self.catalog, device_ip=device_ip, progress=progress, selection=chosen)
        else:
            source = campaign_source(self.catalog, campaigns, device_ip=device_ip, progress=progress)
        if reject or unmonitored:
            if adapt != "none":
                from echolab.analysis.compare.specs import AnalysisError

                raise AnalysisError("a model with a reject option does not adapt to each home: give one of "
                                    "--reject/--unmonitored and --adapt")
            from echolab.analysis.compare.reject import train_with_reject

            trained = train_with_reject(source, features, model, reject=reject, unmonitored=tuple(unmonitored),
                                        grids_path=grids, seed=seed)
        else:
            trained = train_model(source, features, model, grids_path=grids, seed=seed, adapt=adapt)
        return TrainResult(trained, save_model(trained, out))

    @staticmethod
    def load_model(path: Path | str) -> "TrainedModel":
        """A model file written by :meth:`train` (its header checked against this echolab)."""
        from echolab.analysis.compare.modelfile import load_model

        return load_model(path)

    @staticmethod
    def convert_model(source: Path | str, out: Path | str | None = None, *, trust: bool = False) -> Path:
        """Rewrite a model file of an older echolab (a joblib pickle) as today's, which loads without running
        code; *trust* says the file is trusted, since reading it runs any code it holds. Returns the file
        written (*out*, default: *source* with the suffix ``.echolab-model``)."""
        from echolab.analysis.compare.modelfile import convert_model

        return convert_model(source, out, trust=trust)

    @staticmethod
    def classify(captures: Iterable[Path | str], model: "TrainedModel | Path | str",
                 cut: "str | SplitSpec" = "auto", *, device_ip: str | None = None, expect: int | None = None,
                 on_capture: Callable[["CaptureOutcome"], None] | None = None) -> Classification:
        """Cut long captures into requests and classify each with a trained model.

        The cut is import's (:meth:`cut_spec`, :meth:`import_captures`): *expect*
        requests per capture guide ``auto`` and the result lists the captures
        cut otherwise (:attr:`Classification.not_as_expected`). *on_capture*
        sees each capture's outcome as it is done (for a model that adapts to
        each home, once every capture is cut and all are classified together). The result counts the
        requests per class, draws them on a timeline and scores them against
        known labels (:meth:`Classification.score`). It needs no catalog:
        ``Lab.classify(...)`` works without a lab. A model that adapts to each
        home classifies the requests of all *captures* together, as one home's.
        """
        from echolab.analysis.compare.classify import check_outcomes, classify_captures

        from echolab.db.files import capture_files

        trained = model if not isinstance(model, (str, Path)) else Lab.load_model(model)
        spec = _cut(cut)
        outcomes = classify_captures(capture_files(captures), trained, spec, device_ip=device_ip,
                                     on_capture=on_capture, expect=expect, check=False)
        return Classification(trained, outcomes, speed=spec.speed, expect=expect, checks=check_outcomes(outcomes))

    @staticmethod
    def classify_live(model: "TrainedModel | Path | str", *, interface: str | None = None,
                      device_ip: str | None = None, sim_prefix: str | None = None, cut: str = "auto",
                      speed: float = 1.0, on_request: Callable[["LiveRequest"], None] | None = None,
                      on_start: Callable[[str, str, str], None] | None = None,
                      should_stop: Callable[[], bool] = lambda: False) -> LiveClassification:
        """Capture an interface (a ring buffer) and classify each request as its answer ends.

        *sim_prefix* names a simulated lab whose gateway interface and Echo
        address are used. The cut is by quiet time: ``gap=SECONDS`` (``auto``
        means the rules' gap, :attr:`echolab.captures.rules.TrafficRules.gap_s`). *on_start(interface, device_ip,
        cut)* is called once capturing runs; the watch ends when
        *should_stop* says so, or at Ctrl-C. It needs no catalog.
        """
        from echolab.analysis.compare.classify import ClassifyError
        from echolab.collector.watch import watch_interface

        trained = model if not isinstance(model, (str, Path)) else Lab.load_model(model)
        if trained.adapt != "none":
            raise ClassifyError(f"the model adapts to each home ({trained.adapt}) from many requests at once, so it "
                                "cannot classify live one request at a time; classify capture files")
        prefix: list[str] = []
        if sim_prefix:
            from echolab.collector.sim import SimLab

            sim = SimLab.load(sim_prefix)
            interface, device_ip, prefix = interface or sim.interface, device_ip or sim.echo_ip, sim.netns_exec()
        if not device_ip:
            raise ClassifyError("live classification needs --device-ip (the Echo's address)")
        if not interface:
            raise ClassifyError("live classification needs an interface to capture (--interface)")
        from echolab.captures.rules import RULES

        spec = Lab.cut_spec(cut if cut != "auto" else f"gap={RULES.gap_s:g}", speed=speed)
        if spec.mode != "gap":
            raise ClassifyError("live classification cuts by quiet time: give --split gap=SECONDS")
        where, who = interface, device_ip
        watcher = watch_interface(where, who, trained.predict, gap_s=spec.seconds / spec.speed,
                                  min_packets=spec.min_packets, min_bytes=spec.min_bytes, prefix=prefix,
                                  on_request=on_request,
                                  on_start=(lambda: on_start(where, who, spec.settings())) if on_start else None,
                                  should_stop=should_stop)
        return LiveClassification(where, who, list(watcher.requests), watcher.set_aside)

    # -- collection --------------------------------------------------------------------------

    def collect(self, settings: "CollectSettings", *, resume: str | None = None, new: bool = False,
                name: str | None = None, display: "Display | None" = None) -> "CollectResult":
        """Run (or resume) a campaign until every class has its target of good captures.

        ``settings.defense`` (a spec, ``collect --defense``) makes the simulated lab's Echo and cloud
        apply that defense live (``echolab.collector.sim.shaping``); other backends refuse it.
        *display* shows the collection as it goes (``echolab.collector.collect.Display``;
        ``plain_display()`` prints plain lines); by default the campaign log is the trail.
        """
        from echolab.collector.collect import collect

        return collect(self.dir, settings, resume=resume, new=new, name=name, display=display)

    # -- defenses (echolab.analysis.defenses; docs/defenses.md) -------------------------------

    def defend(self, defense: str, *, campaign: str | int | None = None, name: str | None = None, seed: int = 0,
               device_ip: str | None = None, progress: ProgressCallback | None = None) -> "DefendReport":
        """Write a defended campaign: the defended twin of each good, undefended capture of *campaign*
        (default: all) as a trace capture (``echolab defend``). *defense* is a spec such as
        ``front:n=1400,w=1-8`` (:meth:`defenses` lists them). Returns the overheads per capture."""
        from echolab.analysis.defenses.dataset import defend_campaign

        return defend_campaign(self.catalog, defense, campaign=campaign, name=name, seed=seed, device_ip=device_ip,
                               progress=progress)

    @staticmethod
    def defenses() -> list[dict[str, object]]:
        """Every defense: its name, parameters with defaults, what it models and its paper (``defend --list``)."""
        from echolab.analysis.defenses.registry import describe_defenses

        return describe_defenses()

    def compare_defenses(self, defenses: Sequence[str], *, features: Sequence[str] = (), models: Sequence[str] = (),
                         campaigns: Sequence[str | int] = (), trials: int = 5, split_by: str = "random",
                         seed: int = 0, device_ip: str | None = None, grids: Path | str | None = None,
                         progress: ProgressCallback | None = None) -> "DefenseComparison":
        """The attacks on each defense, trained on undefended and on defended traffic on the same splits,
        with each defense's overheads (``analyze defenses``). *features* are sequence sets (default: kfp
        and cumul, each with its own classifier unless *models*); nothing is written to the catalog."""
        from echolab.analysis.compare.defenses import compare_defenses

        return compare_defenses(self.catalog, defenses, features=features, models=models, campaigns=campaigns,
                                trials=trials, split_by=split_by, seed=seed, device_ip=device_ip,
                                grids_path=str(grids) if grids else None, progress=progress)


def _cut(cut: "str | SplitSpec") -> "SplitSpec":
    return Lab.cut_spec(cut) if isinstance(cut, str) else cut


def _spec(feature: "str | FeatureSpec") -> "FeatureSpec":
    from echolab.analysis.compare.specs import FeatureSpec

    return FeatureSpec.parse(feature) if isinstance(feature, str) else feature


def _feature(feature: "str | FeatureSpec") -> tuple[str, dict[str, object]]:
    """A feature set's name and options, from ``histogram:bins=25`` or a parsed spec."""
    spec = _spec(feature)
    return spec.set_name, spec.option_dict


__all__ = ["Classification", "FeatureTable", "FolderCut", "Lab", "LiveClassification",
           "TrainResult"]
