"""``echolab analyze``: run the study's classifier comparison, list runs, show and report them."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from echolab.cli import selecting as choose
from echolab.cli.common import console, emit_rows, key_value_table, open_lab, rich_progress

app = typer.Typer(help="Compare classifiers on the catalog's captures (the study's six by default), report, "
                       "and train model files.",
                  no_args_is_help=True)


class SplitBy(str, Enum):  # echolab.analysis.compare.splits.SPLIT_MODES (a test keeps them equal)
    random = "random"
    source = "source"
    session = "session"
    day = "day"
    campaign = "campaign"
    device = "device"
    location = "location"


class FitOn(str, Enum):
    all = "all"
    train = "train"


class Adaptation(str, Enum):  # echolab.analysis.compare.adapt.ADAPTATIONS (a test keeps them equal)
    none = "none"
    standardize = "standardize"
    quantile = "quantile"
    coral = "coral"


def _parse_bins(text: str) -> list[int]:
    try:
        bins = [int(b) for b in text.split(",") if b.strip()]
    except ValueError:
        raise typer.BadParameter("write bin counts separated by commas, e.g. 5,10,15,25,50,100,200")
    if not bins or min(bins) < 1:
        raise typer.BadParameter("bin counts must be positive integers")
    return bins


@app.command("run")
def run_cmd(
    ctx: typer.Context,
    features: Annotated[Optional[list[str]], typer.Option(
        "--features", "-f",
        help="Feature set, repeatable: tcptrace, histogram, combined, the sequence sets sequence, kfp, cumul, or "
             "the framing-free sets flow, volume, timing, with options as histogram:bins=25,include_acks=true, "
             "cumul:points=50 or flow:half=upload. Default: the study's three.")
    ] = None,
    models: Annotated[Optional[list[str]], typer.Option(
        "--models", "-m", help="Model name from the grids file, repeatable (kfp_forest, kfp_knn, cumul_svm and "
                               "deep_cnn run only when named). Default: the study's six.")] = None,
    trials: Annotated[Optional[int], typer.Option(
        help="Random (or grouped by source or session) 80/20 trials per feature set and model; default 100. "
             "Split modes that leave one group out per trial (day, campaign, device, location) refuse it.",
        min=1)] = None,
    seed: Annotated[int, typer.Option(help="Seed of the trial splits and the models.")] = 0,
    jobs: Annotated[Optional[int], typer.Option(help="Local worker processes (default: every core).", min=1)] = None,
    cluster: Annotated[Optional[str], typer.Option(
        help="Run on this Dask scheduler (e.g. tcp://10.0.0.5:8786) instead of the local cores.")] = None,
    split_by: Annotated[SplitBy, typer.Option(
        help="random: the study's stratified 80/20 splits. source, session: grouped stratified 80/20 splits that "
             "keep each long capture (source) or collection session on one side. day, campaign, device, location: "
             "train on all but one, test on it, on the classes every group holds.")
    ] = SplitBy.random,
    grids: Annotated[Optional[Path], typer.Option(
        help="Grids file (default: analysis/compare/grids.toml).", exists=True, dir_okay=False)] = None,
    name: Annotated[Optional[str], typer.Option(
        help="Run name (default: run-DATE-TIME); an existing name is resumed and updated.")] = None,
    fit_features_on: Annotated[FitOn, typer.Option(
        help="Learn feature state (histogram edges, constant columns) on all data (the study) or per trial "
             "on the training part.")] = FitOn.all,
    bins_sweep: Annotated[Optional[str], typer.Option(
        help="Also run the histogram set at these bin counts, with and without ACKs (Table I), "
             "e.g. 5,10,15,25,50,100,200.")] = None,
    ablations: Annotated[bool, typer.Option(
        "--ablations", help="Also run the study's feature-group ablations.")] = False,
    device_ip: Annotated[Optional[str], typer.Option(help="The Echo's address, when the catalog does not say.")] = None,
    campaigns: Annotated[Optional[list[str]], typer.Option(
        "--campaign", "-c", help="Analyse this campaign (name or id), repeatable, e.g. a defended one. Default: "
                                 "every capture but the defended ones.")] = None,
    synthetic: Annotated[Optional[int], typer.Option(
        help="Use N synthetic captures per class instead of the catalog (to try the toolkit).", min=5)] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write the report when done.")] = True,
    adapt: Annotated[Adaptation, typer.Option(
        help="Unsupervised adaptation to each home, from features alone (never labels): standardize or quantile "
             "(each home's features standardised, or mapped to their quantiles, within that home), coral (CORAL: "
             "training homes re-coloured with the test home's covariance). The report names it.")
    ] = "none",  # type: ignore[assignment]
    adapt_by: Annotated[str, typer.Option(help="The grouping that says which home a capture is from.")] = "campaign",
    open_world: Annotated[bool, typer.Option(
        "--open-world", help="Score an open world: the --monitored classes against every other class, "
                             "unmonitored classes held out by class (docs/open-world.md).")] = False,
    monitored: Annotated[Optional[str], typer.Option(
        help="With --open-world: the monitored classes, separated by commas, e.g. weather,music,directions.")
    ] = None,
    target: Annotated[str, typer.Option(
        help="With --open-world: what each trial's threshold is chosen for on its training part, "
             "precision=P or fpr=F.")] = "precision=0.9",
    json_: Annotated[bool, typer.Option("--json", help="Print the run's results as JSON instead of tables.")] = False,
    labels: choose.Labels = None,
    exclude_labels: choose.ExcludeLabels = None,
    min_per_class: choose.MinPerClass = None,
    kind: choose.Kinds = None,
    drop_unsplittable: Annotated[bool, typer.Option(
        "--drop-unsplittable", help="With --split-by other than random: leave out classes whose captures lie in "
                                    "only one group (the run's notes name them) instead of failing.")] = False,
) -> None:
    """Run (or resume) the comparison; finished trials are cached in the catalog."""
    watched = tuple(c.strip() for c in (monitored or "").split(",") if c.strip())
    if open_world != bool(watched):
        raise typer.BadParameter("--open-world and --monitored A,B,... go together", param_hint="--monitored")
    if drop_unsplittable and split_by is SplitBy.random:
        raise typer.BadParameter("--drop-unsplittable applies to grouped splits: add --split-by source (or "
                                 "session, day, campaign, device, location)")
    chosen = choose.selection(campaigns, labels, exclude_labels, min_per_class, kind)
    if synthetic and not chosen.everything:
        raise typer.BadParameter("--synthetic makes its own captures: leave out --campaign, --label, "
                                 "--exclude-label, --min-per-class and --kind")
    with open_lab(ctx) as lab:
        with rich_progress() as progress:
            result = lab.compare(features=features, models=models or (), trials=trials, seed=seed,
                                 split_by=split_by.value, fit_features_on=fit_features_on.value, grids=grids,
                                 bins_sweep=_parse_bins(bins_sweep) if bins_sweep else (), ablations=ablations,
                                 name=name, device_ip=device_ip, synthetic=synthetic, jobs=jobs, cluster=cluster,
                                 adapt=adapt.value, adapt_by=adapt_by, monitored=watched, threshold_target=target,
                                 selection=chosen, drop_unsplittable=drop_unsplittable, progress=progress)
        if json_:
            if report:
                lab.report(result)
            print_json(run_json(result))
            return
        if result.unchanged:
            console.print(f"Run [bold]{result.name}[/]: unchanged (the same settings, data and library versions "
                          f"as this stored run), {result.cached} trials, {result.seconds:.1f} s")
        else:
            console.print(f"Run [bold]{result.name}[/]: {result.computed} trials computed, {result.cached} from "
                          f"cache, {result.seconds:.1f} s")
        print_notes(result.run)
        console.print(accuracy_table(result.run))
        if (result.run.summary or {}).get("open_world"):
            console.print(open_world_table(result.run))
        print_leakage(result.run)
        if report:
            console.print(f"Report: {lab.report(result)}")


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", "-o", help="The model file to write, e.g. model.echolab-model.",
                                      dir_okay=False)],
    features: Annotated[str, typer.Option(
        "--features", "-f", help="Feature set, with options as in 'analyze run', e.g. histogram:bins=25.")
    ] = "combined",
    model: Annotated[str, typer.Option("--model", "-m", help="Model name from the grids file.")] = "random_forest",
    campaigns: choose.Campaigns = None,
    labels: choose.Labels = None,
    exclude_labels: choose.ExcludeLabels = None,
    min_per_class: choose.MinPerClass = None,
    kind: choose.Kinds = None,
    seed: Annotated[int, typer.Option(help="Seed of the model (random forests, MLP).")] = 0,
    grids: Annotated[Optional[Path], typer.Option(
        help="Grids file (default: analysis/compare/grids.toml).", exists=True, dir_okay=False)] = None,
    device_ip: Annotated[Optional[str], typer.Option(help="The Echo's address, when the catalog does not say.")] = None,
    adapt: Annotated[Adaptation, typer.Option(
        help="Unsupervised adaptation to each home: standardize or quantile each campaign's features within it; "
             "'classify' then does the same to the requests it reads together (coral: comparisons only).")
    ] = "none",  # type: ignore[assignment]
    reject: Annotated[Optional[str], typer.Option(
        help="Give the model a reject option: a threshold chosen on the training captures for precision=P or "
             "fpr=F, under which 'classify' says unknown (stored in the file's header).")] = None,
    unmonitored: Annotated[Optional[str], typer.Option(
        help="Classes (separated by commas) to learn as one class, 'unmonitored', whose requests 'classify' "
             "calls unknown; an fpr= target needs them.")] = None,
) -> None:
    """Fit one model on the chosen captures (its grid search on all of them) and write it to a file."""
    others = tuple(c.strip() for c in (unmonitored or "").split(",") if c.strip())
    chosen = choose.selection(campaigns, labels, exclude_labels, min_per_class, kind)
    with open_lab(ctx) as lab, rich_progress() as progress:
        written = lab.train(out, features=features, model=model, seed=seed, grids=grids, selection=chosen,
                            device_ip=device_ip, adapt=adapt.value, reject=reject, unmonitored=others,
                            progress=progress)
    trained = written.model
    params = ", ".join(f"{k}={v}" for k, v in trained.best_params.items()) or "none searched"
    console.print(f"Model {trained.model_name} on {trained.feature_key}: {trained.n_captures} captures of "
                  f"{len(trained.classes)} classes from {', '.join(trained.campaigns)}; best {params} "
                  f"(cross-validated accuracy {100 * trained.cv_score:.2f}%)"
                  + (f"; adapts to each home by {trained.adapt}" if trained.adapt != "none" else "")
                  + f". Wrote {written.path}")
    if trained.reject:
        r, t = trained.reject, trained.reject["train"]
        console.print(f"Reject option: unknown under {r['threshold']:.3f}, chosen for {r['target']} "
                      f"({'reached' if r['reached'] else 'NOT reached: the best there is'}; on the training "
                      f"captures, out of fold: precision {100 * t['precision']:.1f}%, recall {100 * t['recall']:.1f}%"
                      + (f", FPR {100 * t['fpr']:.1f}%" if t['n_unmonitored'] else "") + ")")


@app.command("convert-model")
def convert_model_cmd(
    model: Annotated[Path, typer.Argument(help="A model file of an older echolab (joblib).", dir_okay=False)],
    trust: Annotated[bool, typer.Option("--trust", help="Say that you trust the file: reading it runs any code "
                                        "it holds.")] = False,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="The file to write. Default: MODEL with "
                                                "the suffix .echolab-model.", dir_okay=False)] = None,
) -> None:
    """Rewrite an old model file (a joblib pickle) as today's, which loads without running code."""
    from echolab.api import Lab

    path = Lab.convert_model(model, out, trust=trust)
    console.print(f"Wrote {path}")


@app.command("ls")
def ls_cmd(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """List analysis runs, newest first."""
    with open_lab(ctx) as lab:
        rows = [_run_row(r) for r in lab.runs()]
    columns = ("id", "name", "status", "created_at", "trials", "features", "models", "best")
    emit_rows(rows, columns + (("fingerprint",) if json_ else ()), fmt="json" if json_ else "table",
              title=f"{len(rows)} analysis runs")


@app.command("show")
def show_cmd(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run name or id (see 'analyze ls').")],
) -> None:
    """Settings and accuracy table of one run."""
    with open_lab(ctx) as lab:
        r = lab.run(run)
        st = r.settings or {}
        console.print(key_value_table([
            ("name", r.name), ("status", r.status), ("created", r.created_at), ("finished", r.finished_at),
            ("data", st.get("data")), ("fingerprint", r.fingerprint), ("captures", (r.summary or {}).get("n_captures")),
            ("split", st.get("split_by")), ("trials", st.get("trials")), ("seed", st.get("seed")),
            ("features", ", ".join(f["key"] for f in st.get("features", []))),
            ("models", ", ".join(st.get("models", []))), ("report", r.report_dir),
            ("versions", ", ".join(f"{k} {v}" for k, v in (r.versions or {}).items())),
        ], title=f"analysis run {r.name}"))
        if r.summary:
            console.print(accuracy_table(r))
            print_leakage(r)


def print_notes(r: Any) -> None:
    """What the run's data left out or how its split differs from what was asked, one line each."""
    for note in (r.settings or {}).get("data_notes", []):
        console.print(f"Note: {note}", markup=False, soft_wrap=True)
    split_note = ((r.summary or {}).get("split") or {}).get("note")
    if split_note:
        console.print(f"Note: {split_note}", markup=False, soft_wrap=True)


def print_leakage(r: Any) -> None:
    """The run's ``Leakage: ...`` line and the figures it rests on (as summary.md has them)."""
    leak = (r.summary or {}).get("leakage")
    if leak:
        console.print(leak["line"], markup=False)
        console.print(leak["figures"], markup=False)
        by_feature = leak.get("by_feature") or {}
        if len(by_feature) > 1:
            console.print("Leakage per feature set: " + ", ".join(f"{k} {v['verdict']}" for k, v in by_feature.items()),
                          markup=False, soft_wrap=True)


@app.command("report")
def report_cmd(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Run name or id (see 'analyze ls').")],
    out: Annotated[Optional[Path], typer.Option(help="Folder to write (default: LAB/reports/RUN).")] = None,
) -> None:
    """Write the run's report: index.html, summary.md and the plots."""
    with open_lab(ctx) as lab:
        path = lab.report(run, out, force=True)
    console.print(f"Report: {path}")


def _run_row(r: Any) -> dict[str, Any]:
    st = r.settings or {}
    best = ""
    if r.summary:
        cells = r.summary.get("cells", {})
        top = max(((c["mean"], f, m) for f, by in cells.items() for m, c in by.items() if c.get("n")), default=None)
        if top:
            best = f"{top[2]} on {top[1]}: {top[0]:.2f}%"
    return {
        "id": r.id, "name": r.name, "status": r.status,
        "created_at": r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else None,
        "trials": st.get("trials") if st.get("split_by", "random") == "random" else f"by {st['split_by']}",
        "features": ", ".join(f["key"] for f in st.get("features", [])),
        "models": len(st.get("models", [])), "fingerprint": (r.fingerprint or "")[:12], "best": best,
    }


def accuracy_table(r: Any) -> Table:
    """The run's Table II as a rich table (mean / std / median, best of each row in bold)."""
    s = r.summary or {}
    models = s.get("models", [])
    table = Table(title="accuracy %: mean / std / median")
    table.add_column("features", overflow="fold")
    for m in models:
        table.add_column(m["short"], justify="right")
    for f in s.get("features", []):
        cells = s["cells"][f["key"]]
        best = max((m["name"] for m in models), key=lambda n: cells[n]["mean"] if cells[n]["n"] else -1)
        row = []
        for m in models:
            c = cells[m["name"]]
            text = f"{c['mean']:.2f} / {c['std']:.2f} / {c['median']:.2f}" if c["n"] else "-"
            row.append(f"[bold]{text}[/]" if m["name"] == best else text)
        table.add_row(f["key"], *row)
    return table


def _register_defenses() -> None:
    from echolab.cli.analyze_defenses import defenses_cmd

    app.command("defenses")(defenses_cmd)


_register_defenses()


def print_json(value: Any) -> None:
    """*value* as strict JSON on stdout (a rate without data, NaN, is null)."""
    import json
    import math
    import sys

    def clean(v: Any) -> Any:
        if isinstance(v, float) and math.isnan(v):
            return None
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    sys.stdout.write(json.dumps(clean(value), indent=1, default=str) + "\n")


def run_json(result: Any) -> dict[str, Any]:
    """What ``analyze run --json`` prints: the run, its accuracy cells and, for an open world, its rates."""
    s = result.run.summary or {}
    cells = {f: {m: {k: c.get(k) for k in ("n", "mean", "std", "median", "f1_mean")} for m, c in by.items()}
             for f, by in s.get("cells", {}).items()}
    out: dict[str, Any] = {"run": result.name, "computed": result.computed, "cached": result.cached,
                           "classes": s.get("classes"), "accuracy": cells,
                           "leakage": (s.get("leakage") or {}).get("line")}
    if s.get("open_world"):
        out["open_world"] = s["open_world"]
    return out


def open_world_table(r: Any) -> Table:
    """The open world's rates per feature set and model (percent, mean over trials at the chosen threshold)."""
    ow = r.summary["open_world"]
    short = {m["name"]: m["short"] for m in r.summary.get("models", [])}
    table = Table(title=f"open world %: {len(ow['monitored'])} monitored ({', '.join(ow['monitored'])}), "
                        f"threshold for {ow['target']}")
    for col in ("features", "model", "TPR", "wrong mon.", "FPR", "precision",
                *(f"r-prec 1:{r}" for r in ow["base_rates"]), "closed acc."):
        table.add_column(col, justify="left" if col in ("features", "model") else "right")
    for fkey, by_model in ow["cells"].items():
        for model, c in by_model.items():
            if not c.get("n"):
                continue
            pct = lambda v: f"{100 * v:.1f}"  # noqa: E731
            table.add_row(fkey, short.get(model, model), pct(c["tpr"]), pct(c["wpr"]), pct(c["fpr"]),
                          pct(c["precision"]), *(pct(c[f"r_precision_1:{r}"]) for r in ow["base_rates"]),
                          pct(c["closed_accuracy"]))
    return table
