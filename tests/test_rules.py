"""The rules of Echo traffic are defined once (echolab/captures/rules.py) and read everywhere else.

The test reads the installed package's source with :mod:`ast` and fails on a copy
of a rule: a number equal to one of the rules' values given to a name that speaks
of a rule (a gap, a keep-alive, a threshold, a window, a delay), in the modules
that read the device's traffic (captures, the collector, classify and their
commands). The simulated lab's own behaviour (collector/sim, its params.toml) is
the simulation's, not a rule of reading traffic, and is left out.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import numpy as np
import pytest

import echolab
from echolab.captures.rules import RULES, TrafficRules, runs, trim_edges

PACKAGE = Path(echolab.__file__).resolve().parent
OWNER = PACKAGE / "captures" / "rules.py"
SCANNED = [
    *sorted((PACKAGE / "captures").glob("*.py")),
    *sorted((PACKAGE / "collector").glob("*.py")),
    PACKAGE / "analysis" / "compare" / "classify.py",
    PACKAGE / "analysis" / "compare" / "cutplot.py",
    PACKAGE / "cli" / "classify.py",
    PACKAGE / "cli" / "catalog.py",
    PACKAGE / "cli" / "collect.py",
    PACKAGE / "db" / "transfer.py",
]
RULE_NAME = re.compile(r"gap|keepalive|keep_alive|min_packets|min_bytes|trailing|attach|quiet|idle|edge|engine|"
                       r"lag|delay|separation|ceiling|margin", re.I)
RULE_VALUES = {v for f in dataclasses.fields(TrafficRules) if isinstance(v := getattr(RULES, f.name), (int, float))
               and not isinstance(v, bool)} | {RULES.keepalive_max_packet_bytes}
#: Help texts that state a rule's value in words instead of formatting it from RULES.
HELP_LITERAL = re.compile(r"default[^.)]*\b(4096|16|0\.4|0\.75)\b|\b16 s\b|\b4096\b")


def _number(node: ast.AST | None) -> float | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and not isinstance(node.value, bool):
        return node.value
    return None


def stray_rules(source: str, where: str = "<text>") -> list[str]:
    """Copies of a rule in *source*: ``where:line: name = value`` each."""
    found = []
    tree = ast.parse(source)

    def check(name: str, value: ast.AST | None, line: int) -> None:
        number = _number(value)
        if number is not None and number in RULE_VALUES and RULE_NAME.search(name):
            found.append(f"{where}:{line}: {name} = {number!r}")

    for node in ast.walk(tree):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, (ast.Name, ast.Attribute)):
                    check(getattr(target, "id", None) or target.attr, node.value, node.lineno)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, (ast.Name, ast.Attribute)):
            check(getattr(node.target, "id", None) or node.target.attr, node.value, node.lineno)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            positional = args.posonlyargs + args.args
            for arg, default in zip(positional[len(positional) - len(args.defaults):], args.defaults):
                check(arg.arg, default, node.lineno)
            for arg, default in zip(args.kwonlyargs, args.kw_defaults):
                check(arg.arg, default, node.lineno)
        elif isinstance(node, ast.keyword) and node.arg:
            check(node.arg, node.value, getattr(node.value, "lineno", 0))
        elif isinstance(node, ast.Compare):  # payload_len <= 300, size > 180
            sides = [node.left, *node.comparators]
            text = " ".join(ast.unparse(s) for s in sides if _number(s) is None)
            if re.search(r"payload|ip_len|size|data_len", text):
                for side in sides:
                    if (n := _number(side)) is not None and n in (RULES.keepalive_payload_bytes,
                                                                   RULES.keepalive_max_packet_bytes,
                                                                   RULES.keepalive_ceiling_payload_bytes):
                        found.append(f"{where}:{node.lineno}: {ast.unparse(node)}")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and HELP_LITERAL.search(node.value):
            found.append(f"{where}:{node.lineno}: {node.value[:60]!r}")
    return found


def test_the_detector_finds_copies_of_a_rule() -> None:
    """The grep below can fail: each of these is a copy of a rule that the code used to hold."""
    copies = [
        "gap_s: float = 1.0\n",
        "def watch(ip, *, min_bytes: int = 4096): pass\n",
        "FILE_LAG_S = 0.75\n",
        "small = [p for p in packets if 0 < p.payload_len <= 300]\n",
        "watch(ip, gap_s=2.0)\n",
        "HELP = 'Attach a burst (default: 16 with auto)'\n",
    ]
    for text in copies:
        assert stray_rules(text), text
    assert not stray_rules("gap_s: float = RULES.gap_s\nPOLL_S = 0.05\n")


def test_each_rule_is_defined_once_in_the_package() -> None:
    assert all(path.is_file() for path in SCANNED) and OWNER.is_file()
    found = [hit for path in SCANNED if path != OWNER
             for hit in stray_rules(path.read_text(), str(path.relative_to(PACKAGE)))]
    assert found == [], "rules copied outside echolab/captures/rules.py:\n" + "\n".join(found)


def test_the_old_owners_are_gone() -> None:
    """One module holds the rules and one walks pcapng: the modules and names that held copies are gone."""
    assert not (PACKAGE / "captures" / "keepalive.py").exists()
    assert not (PACKAGE / "captures" / "split.py").exists()
    text = "\n".join(p.read_text() for p in SCANNED if p != OWNER)
    for name in ("KEEPALIVE_BYTES", "KEEPALIVE_PAYLOAD_BYTES", "FILE_LAG_S", "ENGINE_DELAY_S", "DEFAULT_GAP_S",
                 "LIVE_DEFAULT_GAP_S", "EDGE_GAP_SHARE", "_pcapng_iface", "complete_blocks"):
        assert not re.search(rf"\b{name}\b", text), name


def test_the_rules_object_is_frozen_and_says_its_units() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        RULES.gap_s = 1.0  # type: ignore[misc]
    units = ("_bytes", "_s", "_packets", "_share", "_ratio", "_separation", "_factor")
    assert all(f.name.endswith(units) for f in dataclasses.fields(TrafficRules))
    assert RULES.keepalive_max_packet_bytes == RULES.keepalive_payload_bytes + RULES.ip_tcp_header_max_bytes
    assert RULES.is_request(RULES.min_packets, RULES.min_bytes)
    assert not RULES.is_request(RULES.min_packets - 1, 10 * RULES.min_bytes)
    assert RULES.is_traffic(RULES.keepalive_payload_bytes + 1) and not RULES.is_traffic(RULES.keepalive_payload_bytes)


def test_runs_break_where_the_quiet_is_longer_than_the_gap() -> None:
    ts = np.array([0, 10, 20, 100, 105, 300])
    assert runs(ts, 50) == [(0, 3), (3, 5), (5, 6)]
    assert runs(ts, 200) == [(0, 6)] and runs(np.array([], dtype=np.int64), 5) == []
    # a run is kept when a keep-alive's packets are bigger than a keep-alive's
    size = np.array([500] * 5 + [RULES.keepalive_max_packet_bytes + 1])
    assert trim_edges(ts, size, min_packets=3, min_bytes=1000, edge_gap_us=50) == (0, 6)
    size[-1] = RULES.keepalive_max_packet_bytes
    assert trim_edges(ts, size, min_packets=3, min_bytes=1000, edge_gap_us=50) == (0, 5)
