"""The classifier comparison: grids, protocol, caching, resume, campaign splits, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as sps
from sqlalchemy import func, select
from typer.testing import CliRunner

from echolab.analysis.compare.grids import DEFAULT_GRIDS, STUDY_MODELS, GridError, load_grids, select_models
from echolab.analysis.compare.splits import leave_one_group_out, random_splits
from echolab.analysis.compare.trials import ProtocolError
from echolab.analysis.compare.runner import AnalysisInterrupted, run_analysis
from echolab.analysis.compare.sources import DataSource
from echolab.analysis.compare.synthetic import synthetic_source
from echolab.analysis.compare.specs import AnalysisError, FeatureSpec, RunSettings
from echolab.analysis.compare.stats import paired_test
from echolab.db.catalog import Catalog
from echolab.db.records import AnalysisRun, TrialResult
from echolab.cli import app
from echolab.labdir import LabDir

from grids import TINY, grids_toml, write_grids


@pytest.fixture
def grids(tmp_path: Path) -> Path:
    return write_grids(tmp_path, TINY)


@pytest.fixture
def cat(sqlite_lab: LabDir):
    with Catalog.open(sqlite_lab) as catalog:
        yield catalog


@pytest.fixture(scope="module")
def source() -> DataSource:
    return synthetic_source(10, campaigns=3, seed=1)


def _settings(grids: Path, **kw) -> RunSettings:
    # The leakage check has tests of its own (test_analysis_leakage.py); these are about trials and the cache.
    base = dict(models=("decision_tree", "knn"), trials=3, seed=7, grids_path=str(grids), leakage_check=False)
    base.update(kw)
    return RunSettings(**base)


def _accuracies(run: AnalysisRun) -> dict[str, dict[str, list[float]]]:
    return {f: {m: c["accuracies"] for m, c in by.items()} for f, by in run.summary["cells"].items()}


# -- grids --------------------------------------------------------------------------------


def test_default_grids_hold_the_studys_six_models() -> None:
    specs = load_grids()
    # The study's six run by default; the sequence attacks' classifiers only when named.
    assert tuple(s.name for s in select_models(specs, None)) == STUDY_MODELS
    assert tuple(specs)[len(STUDY_MODELS):] == ("kfp_forest", "kfp_knn", "cumul_svm", "deep_cnn", "mlp_jax")
    rf = specs["random_forest"]
    assert rf.build().get_params()["n_estimators"] == 400
    assert rf.param_grid() == {"criterion": ["gini", "entropy"], "max_features": ["sqrt", "log2"]}
    lin = specs["svm_linear"].build()
    assert type(lin).__name__ == "SVC" and lin.kernel == "linear" and lin.decision_function_shape == "ovo"
    assert specs["svm_linear"].param_grid()["C"] == [0.1, 0.5, 1, 5, 10]
    assert "auto" in specs["svm_rbf"].param_grid()["gamma"]  # 1 / n_features
    assert specs["mlp"].param_grid()["hidden_layer_sizes"] == [(100,), (300,), (100, 100)]
    assert set(specs["knn"].param_grid()["metric"]) == {"manhattan", "euclidean"}
    assert specs["decision_tree"].build(random_state=3).random_state == 3


def test_grid_errors_say_what_is_wrong(tmp_path: Path) -> None:
    bad = tmp_path / "g.toml"
    bad.write_text('[models.x]\nestimator = "sklearn.svm.SVC"\ngrid = { Cee = [1] }\n')
    with pytest.raises(GridError, match=r"model 'x': sklearn.svm.SVC has no parameter\(s\) Cee"):
        load_grids(bad)
    bad.write_text('[models.x]\nestimator = "os.system"\n')
    with pytest.raises(GridError, match="is not one of the classifiers a grids file may name"):
        load_grids(bad)
    with pytest.raises(GridError, match="unknown model"):
        select_models(load_grids(DEFAULT_GRIDS), ["forest"])


def test_feature_spec_parsing() -> None:
    spec = FeatureSpec.parse("histogram:bins=25,include_acks=true")
    assert spec == FeatureSpec.of("histogram", bins=25, include_acks=True)
    assert spec.key == "histogram[bins=25,include_acks=true]"
    assert FeatureSpec.parse("tcptrace").key == "tcptrace"
    with pytest.raises(AnalysisError, match="not KEY=VALUE"):
        FeatureSpec.parse("histogram:bins")


# -- protocol -----------------------------------------------------------------------------


def test_random_splits_are_stratified_80_20_and_seeded() -> None:
    y = np.repeat(np.array(["a", "b", "c", "d", "e", "f"]), 130)
    splits = random_splits(y, 5, seed=3)
    for s in splits:
        assert len(s.train) == 624 and len(s.test) == 156
        assert set(np.unique(y[s.test], return_counts=True)[1]) == {26}
        assert not set(s.train) & set(s.test)
    again = random_splits(y, 5, seed=3)
    assert all((a.test == b.test).all() for a, b in zip(splits, again))
    assert not (random_splits(y, 1, seed=4)[0].test == splits[0].test).all()


def test_campaign_splits_hold_one_campaign_out() -> None:
    groups = np.array(["b", "a", "c", "a", "b", "c"] * 4)
    y = np.array(["x"] * 12 + ["y"] * 12)
    splits = leave_one_group_out(y, groups)
    assert [s.test_group for s in splits] == ["a", "b", "c"]
    for s in splits:
        assert set(groups[s.test]) == {s.test_group}
        assert s.test_group not in set(groups[s.train])
    with pytest.raises(ProtocolError, match="at least 2 campaigns"):
        leave_one_group_out(np.array(["x", "y"]), np.array(["a", "a"]))


def test_paired_test_matches_scipy() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(0.8, 0.95, 40)
    b = a - rng.normal(0.01, 0.02, 40)
    t = paired_test(a, b, test_fraction=0.2)
    assert t.p_ttest == pytest.approx(sps.ttest_rel(a, b).pvalue)
    assert t.p_wilcoxon == pytest.approx(sps.wilcoxon(a - b).pvalue)
    assert t.ci_low < t.mean_diff < t.ci_high
    assert t.mean_diff == pytest.approx(100 * np.mean(a - b))
    assert t.p_corrected > t.p_ttest  # the correction is more cautious
    same = paired_test(a, a)
    assert same.p_ttest == 1.0 and same.p_wilcoxon == 1.0


# -- runs: reproducibility, caching, resume --------------------------------------------------


def test_same_seed_same_numbers_in_process_and_in_parallel(cat: Catalog, source, grids: Path, tmp_path: Path) -> None:
    first = run_analysis(cat, source, _settings(grids), name="a", jobs=1)
    assert first.computed == 3 * 2 * 3 and first.cached == 0
    with Catalog.open(LabDir.open(tmp_path / "other", create=True)) as other:
        again = run_analysis(other, source, _settings(grids), name="b", jobs=2)
        assert again.computed == 18
        assert _accuracies(again.run) == _accuracies(first.run)
        # The row order the data comes in does not matter: the source is put in canonical order.
        shuffled = DataSource(source.records[::-1], source.y[::-1], source.groups[::-1],
                                     source.sha256s[::-1], source.capture_ids[::-1], source.make_transformer)
        reordered = run_analysis(other, shuffled, _settings(grids), name="c", jobs=1)
        assert reordered.computed == 0 and _accuracies(reordered.run) == _accuracies(first.run)
    other_seed = run_analysis(cat, source, _settings(grids, seed=8), name="d", jobs=1)
    assert other_seed.computed == 18
    assert _accuracies(other_seed.run) != _accuracies(first.run)


def test_cache_reuses_trials_and_adding_a_model_runs_only_it(cat: Catalog, source, grids: Path) -> None:
    run_analysis(cat, source, _settings(grids), name="base", jobs=1)
    again = run_analysis(cat, source, _settings(grids), name="base", jobs=1)
    assert (again.computed, again.cached) == (0, 18)
    more = run_analysis(cat, source, _settings(grids, models=("decision_tree", "knn", "mlp")), name="more",
                        jobs=1)
    assert (more.computed, more.cached) == (9, 18)
    assert cat.session.scalar(select(func.count()).select_from(TrialResult)) == 27
    mlp = more.run.summary["cells"]["tcptrace"]["mlp"]
    assert mlp["convergence_warnings"] > 0  # max_iter = 5 never converges: counted, not printed
    # Changing one model's grid recomputes that model only.
    grids.write_text(grids_toml({**TINY, "knn": {"params": {}, "grid": {"n_neighbors": [1, 5], "metric": ["manhattan", "euclidean"]}}}))
    changed = run_analysis(cat, source, _settings(grids), name="changed", jobs=1)
    assert (changed.computed, changed.cached) == (9, 9)
    # One more trial computes only the new trial.
    longer = run_analysis(cat, source, _settings(grids, trials=4), name="longer", jobs=1)
    assert (longer.computed, longer.cached) == (6, 18)


def test_interrupted_run_keeps_finished_trials_and_resumes(cat: Catalog, source, grids: Path) -> None:
    seen = []

    def stop_after_four(key: str, outcome) -> None:
        seen.append(key)
        if len(seen) == 4:
            raise KeyboardInterrupt

    with pytest.raises(AnalysisInterrupted, match=r"interrupted after 4 of 18 trials; .* rerun the same command"):
        run_analysis(cat, source, _settings(grids), name="r", jobs=1, on_trial=stop_after_four,
                     commit_every=100)
    run = cat.session.scalar(select(AnalysisRun).where(AnalysisRun.name == "r"))
    assert run.status == "interrupted"
    stored = set(cat.session.scalars(select(TrialResult.key)))
    assert stored == set(seen)
    resumed = run_analysis(cat, source, _settings(grids), name="r", jobs=1)
    assert (resumed.computed, resumed.cached) == (14, 4)
    assert resumed.run.status == "done" and resumed.run.id == run.id


def test_split_by_campaign_tests_on_each_held_out_campaign(cat: Catalog, source, grids: Path) -> None:
    res = run_analysis(cat, source, _settings(grids, split_by="campaign"), name="camp", jobs=1)
    cell = res.run.summary["cells"]["combined"]["knn"]
    assert cell["n"] == 3 and cell["test_groups"] == ["synthetic-1", "synthetic-2", "synthetic-3"]
    assert res.run.summary["tests"]["test_fraction"] is None
    single = synthetic_source(10, campaigns=1)
    with pytest.raises(ProtocolError, match="needs captures from at least 2 campaigns"):
        run_analysis(cat, single, _settings(grids, split_by="campaign"), name="one", jobs=1)


def test_features_fit_per_trial_on_training_part(cat: Catalog, source, grids: Path) -> None:
    """The synthetic transformer learns nothing, so fitting it per trial must give the same numbers."""
    whole = run_analysis(cat, source, _settings(grids), name="all", jobs=1)
    per_trial = run_analysis(cat, source, _settings(grids, fit_features_on="train"), name="train", jobs=1)
    assert per_trial.computed == 18  # a different configuration, so not taken from the cache
    assert _accuracies(per_trial.run) == _accuracies(whole.run)


def test_summary_holds_what_the_study_reports(cat: Catalog, source, grids: Path) -> None:
    res = run_analysis(cat, source, _settings(grids, models=("decision_tree", "random_forest")), name="s",
                       jobs=1)
    s = res.run.summary
    assert s["classes"][:2] == ["information", "quotes"] and s["n_captures"] == 60
    assert s["campaigns"] == {"synthetic-1": 20, "synthetic-2": 20, "synthetic-3": 20}
    rf = s["cells"]["combined"]["random_forest"]
    assert len(rf["importances_mean"]) == 52 == s["features"][2]["n_features"]
    assert np.isclose(sum(rf["importances_mean"]), 1.0)
    conf = np.asarray(rf["confusion_mean"])
    assert conf.shape == (6, 6) and np.isclose(conf.sum(), 12)  # 12 test captures per trial
    assert sum(rf["params_chosen"]["max_features"].values()) == 3
    # On the 22 tcptrace columns sqrt and log2 grow the same forest: a tie, not a win for sqrt.
    assert s["cells"]["tcptrace"]["random_forest"]["params_chosen"]["max_features"] == {"sqrt = log2 (same model)": 3}
    assert rf["mean"] == pytest.approx(100 * np.mean(rf["accuracies"]))
    assert rf["median"] == pytest.approx(100 * np.median(rf["accuracies"]))
    pairs = s["tests"]["between_features"]["random_forest"]
    assert [(p["a"], p["b"]) for p in pairs] == [("tcptrace", "histogram"), ("tcptrace", "combined"),
                                                ("histogram", "combined")]
    assert res.run.versions["scikit-learn"] and len(res.run.fingerprint) == 64


# -- the CLI ------------------------------------------------------------------------------------


def test_cli_run_ls_show_report(sqlite_lab: LabDir, grids: Path) -> None:
    cli = CliRunner()
    base = ["--lab", str(sqlite_lab.root), "analyze"]
    out = cli.invoke(app, [*base, "run", "--synthetic", "8", "--trials", "2", "-m", "knn", "--grids", str(grids),
                           "--name", "cli", "--jobs", "1"], terminal_width=200)
    assert out.exit_code == 0, out.output
    assert "Run cli: 6 trials computed, 0 from cache" in out.output
    assert (sqlite_lab.reports_dir / "cli" / "index.html").exists()
    listed = cli.invoke(app, [*base, "ls", "--json"])
    assert listed.exit_code == 0 and json.loads(listed.output)[0]["name"] == "cli"
    shown = cli.invoke(app, [*base, "show", "cli"], terminal_width=200)
    assert shown.exit_code == 0 and "KNN" in shown.output and "histogram" in shown.output
    missing = cli.invoke(app, [*base, "report", "nope"])
    assert missing.exit_code == 1
    assert "Error: no analysis run 'nope'\nHint: 'echolab analyze ls' lists the runs" in missing.output
    bad = cli.invoke(app, [*base, "run", "--synthetic", "8", "-m", "forest", "--grids", str(grids)])
    assert bad.exit_code == 1 and "Error: unknown model(s) forest" in bad.output


# -- an unchanged rerun, progress, the catalog's run queries ------------------------------------


def test_unchanged_rerun_leaves_the_stored_run_as_it_was(cat: Catalog, source, grids: Path) -> None:
    first = run_analysis(cat, source, _settings(grids), name="same", jobs=1)
    summary, finished = json.dumps(first.run.summary), first.run.finished_at
    again = run_analysis(cat, source, _settings(grids), name="same", jobs=1)
    assert (again.computed, again.cached) == (0, 18) and again.run.id == first.run.id
    cat.session.expire_all()
    stored = cat.analysis_run("same")
    assert json.dumps(stored.summary) == summary and stored.summary["timing"]["computed"] == 18
    assert stored.finished_at.replace(tzinfo=None) == finished.replace(tzinfo=None)
    # Other settings under the same name are a change: the run is recorded again, from the cache.
    fewer = run_analysis(cat, source, _settings(grids, models=("knn",)), name="same", jobs=1)
    assert (fewer.computed, fewer.cached) == (0, 9)
    assert fewer.run.summary["timing"]["cached"] == 9 and [m["name"] for m in fewer.run.summary["models"]] == ["knn"]


def test_unchanged_rerun_without_a_name_is_the_newest_same_run(cat: Catalog, source, grids: Path) -> None:
    first = run_analysis(cat, source, _settings(grids, models=("knn",)), jobs=1)
    assert not first.unchanged and first.computed == 9
    again = run_analysis(cat, source, _settings(grids, models=("knn",)), jobs=1)
    assert again.unchanged and again.run.id == first.run.id and again.name == first.name
    assert (again.computed, again.cached) == (0, 9) and len(cat.analysis_runs()) == 1
    other = run_analysis(cat, source, _settings(grids, models=("decision_tree",)), jobs=1)  # a change: a new run
    assert not other.unchanged and other.run.id != first.run.id and len(cat.analysis_runs()) == 2


def test_progress_is_an_opt_in_callback(cat: Catalog, source, grids: Path, capsys) -> None:
    calls = []
    run_analysis(cat, source, _settings(grids, models=("knn",), trials=2), name="p", jobs=1,
                 progress=lambda task, done, total: calls.append((task, done, total)))
    assert calls[0] == ("trials", 0, 6) and calls[-1] == ("trials", 6, 6) and len(calls) == 7
    run_analysis(cat, source, _settings(grids, models=("decision_tree",), trials=2), name="q", jobs=1)
    assert capsys.readouterr() == ("", "")  # without a callback the library draws nothing


def test_catalog_lists_and_finds_runs(cat: Catalog, source, grids: Path) -> None:
    from echolab.db.catalog import UnknownRunError

    older = run_analysis(cat, source, _settings(grids, models=("knn",), trials=2), name="older", jobs=1)
    newer = run_analysis(cat, source, _settings(grids, models=("knn",), trials=2, seed=3), name="newer", jobs=1)
    assert [r.name for r in cat.analysis_runs()] == ["newer", "older"]
    assert cat.analysis_run(str(older.run.id)).name == "older" and cat.analysis_run("newer") is newer.run
    assert cat.analysis_run("nope", missing_ok=True) is None
    with pytest.raises(UnknownRunError, match=r"^no analysis run 'nope'$"):
        cat.analysis_run("nope")


def test_library_modules_import_no_cli_and_draw_no_plots_on_import() -> None:
    """Library code imports neither the CLI nor typer/rich; the report imports matplotlib only to draw;
    the comparison's planning and the feature cache load no heavy library."""
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import echolab.analysis.compare.runner, echolab.analysis.compare.report, echolab.analysis.compare.sources\n"
        "import echolab.analysis.features.store, echolab.analysis.features.sets\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'scipy', 'pandas'}))\n"
        "import echolab.prompts.synth, echolab.demo\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'matplotlib', 'jinja2')\n"
        "             or m.startswith('echolab.cli')))\n"
    )
    out = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, check=True)
    # Planning a run and finding it cached needs no scikit-learn, SciPy or pandas (they take seconds to load).
    assert out.stdout.split("\n")[:2] == ["[]", "[]"], out.stdout


def test_an_adapted_run_trains_and_tests_every_trial_on_features_adapted_to_its_held_out_home(
        cat: Catalog, tmp_path: Path) -> None:
    """``--adapt coral`` end to end: each leave-one-campaign-out trial's 1-NN sees the matrix that CORAL made with
    that trial's held-out campaign as the target, and no trial is served from the unadapted run's cache."""
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.preprocessing import StandardScaler

    from echolab.analysis.compare.adapt import adapt_matrix
    from echolab.analysis.compare.keys import plan_splits
    from echolab.analysis.compare.matrices import build_matrix

    # the campaigns' features shifted and scaled apart, as homes' framing would
    from dataclasses import replace

    src = synthetic_source(12, campaigns=3, seed=4, separation=1.5)
    home = {g: k + 1.0 for k, g in enumerate(sorted(set(src.groups.tolist())))}
    factor = np.array([home[g] for g in src.groups])[:, None]
    src = replace(src, records=np.asarray(src.records, dtype=float) * factor + 3 * factor)
    one_nn = write_grids(tmp_path, {"knn": {"grid": {"n_neighbors": [1]}}})
    spec = FeatureSpec.of("tcptrace")
    runs = {}
    for method in ("none", "coral"):
        settings = _settings(one_nn, models=("knn",), features=(spec,), split_by="campaign", adapt=method)
        runs[method] = run_analysis(cat, src, settings, name=f"adapt-{method}", jobs=1)
    assert runs["coral"].computed == runs["none"].computed == 3  # three held-out campaigns, none reused
    X = build_matrix(src, spec).X
    splits, _ = plan_splits(src, settings)
    for method, res in runs.items():
        cell = res.run.summary["cells"]["tcptrace"]["knn"]
        assert cell["test_groups"] == [s.test_group for s in splits]
        expected = []
        for s in splits:
            Xa = adapt_matrix(X, src.groupings["campaign"], method, s.test)
            scaler = StandardScaler().fit(Xa[s.train])
            knn = KNeighborsClassifier(1).fit(scaler.transform(Xa[s.train]), src.y[s.train])
            expected.append(knn.score(scaler.transform(Xa[s.test]), src.y[s.test]))
        assert cell["accuracies"] == pytest.approx(expected)
    assert runs["coral"].run.summary["cells"]["tcptrace"]["knn"]["accuracies"] != \
        runs["none"].run.summary["cells"]["tcptrace"]["knn"]["accuracies"]


def test_a_held_out_campaigns_trial_key_names_its_classes_when_some_are_left_out() -> None:
    """The same held-out campaign evaluated on other classes is another task: its split token says which."""
    from dataclasses import replace

    from echolab.analysis.compare.keys import plan_splits

    src = synthetic_source(6, campaigns=3, seed=2)
    settings = RunSettings(split_by="campaign", leakage_check=False)
    _, tokens = plan_splits(src, settings)
    assert all(":on " not in t for t in tokens.values())  # every class in every campaign: the keys as before
    one = sorted(set(src.groups.tolist()))[0]
    y = np.where((src.groups == one) & (src.y == src.y[0]), "only-here", src.y)
    splits, tokens = plan_splits(replace(src, y=y), settings)
    common = "+".join(sorted(set(src.y.tolist()) - {src.y[0]}))
    assert all(s.dropped == tuple(sorted({"only-here", src.y[0]})) for s in splits)
    assert all(t.endswith(f":on {common}") for t in tokens.values())
