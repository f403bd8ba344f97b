"""The comparison's schedule: longest trials first, by measured cost where a run has measured it."""

from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np

from echolab.analysis.compare.execute import PRIOR_SECONDS, estimated_cost, measured_costs, schedule
from echolab.analysis.compare.keys import PlannedTrial
from echolab.analysis.compare.trials import Split


def planned(feature: str, model: str, trial: int) -> PlannedTrial:
    split = Split(trial, np.arange(3), np.arange(3, 4))
    return PlannedTrial(f"{feature}-{model}-{trial}", SimpleNamespace(key=feature), SimpleNamespace(name=model), split)


def test_longest_first_then_trial_order() -> None:
    todo = [planned("combined", m, t) for t in range(2) for m in ("knn", "mlp", "decision_tree", "random_forest")]
    order = [(p.model.name, p.split.trial) for p in schedule(todo)]
    assert order == [("mlp", 0), ("mlp", 1), ("random_forest", 0), ("random_forest", 1), ("knn", 0), ("knn", 1),
                     ("decision_tree", 0), ("decision_tree", 1)]
    assert PRIOR_SECONDS["mlp"] > PRIOR_SECONDS["random_forest"] > PRIOR_SECONDS["svm_rbf"]


def test_measured_seconds_overrule_the_prior() -> None:
    rows = [SimpleNamespace(feature_set="tcptrace", model="knn", seconds=s) for s in (20.0, 40.0)]
    rows.append(SimpleNamespace(feature_set="tcptrace", model="mlp", seconds=None))  # not measured: ignored
    measured = measured_costs(rows)
    assert measured == {("tcptrace", "knn"): 30.0}
    knn, mlp = planned("tcptrace", "knn", 5), planned("tcptrace", "mlp", 0)
    assert estimated_cost(knn, measured) == 30.0 and estimated_cost(mlp, measured) == PRIOR_SECONDS["mlp"]
    assert [p.model.name for p in schedule([mlp, knn], measured)] == ["knn", "mlp"]
    assert estimated_cost(planned("tcptrace", "custom", 0)) == 1.0  # a model of a user's grids file


_FAULTS = """
import resource, sys
import numpy as np
from echolab.analysis.compare.execute import keep_freed_memory
tuned = keep_freed_memory() if sys.argv[1] == "tuned" else None
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(6):  # a mini-batch's worth of 1 MiB arrays, taken and given back together
    blocks = [np.ones(1 << 17) for _ in range(12)]
    del blocks
print(tuned, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_a_worker_keeps_freed_memory_instead_of_faulting_it_back_in() -> None:
    """Each worker of a local run tells glibc to keep freed blocks: taking one again costs no page faults."""
    import platform
    import subprocess
    import sys

    def faults(how: str) -> tuple[str, int]:
        out = subprocess.run([sys.executable, "-P", "-c", _FAULTS, how], capture_output=True, text=True, check=True)
        tuned, count = out.stdout.split()
        return tuned, int(count)

    if platform.libc_ver()[0] != "glibc":  # macOS, musl: nothing to tell, and nothing is changed
        assert faults("tuned")[0] == "False"
        return
    plain, tuned = faults("plain"), faults("tuned")
    assert plain[0] == "None" and tuned[0] == "True"
    pages = (12 << 20) // 4096
    assert plain[1] > 4 * pages  # given back to the system and faulted in again, round after round
    assert tuned[1] < 2 * pages  # the first round only


def test_a_run_in_the_callers_own_process_leaves_its_allocator_alone(monkeypatch) -> None:
    from echolab.analysis.compare import execute

    called = []
    monkeypatch.setattr(execute, "keep_freed_memory", lambda: called.append(1) or True)
    monkeypatch.setattr(execute, "execute", lambda task: ("key", task))
    assert execute.execute_in_worker("task", os.getpid()) == ("key", "task")
    assert not called
