"""The capture engine's start and stop as the collector sees them (collector/recorder.py)."""

from __future__ import annotations

import shutil
import signal

import pytest

from echolab.collector.recorder import CaptureProcess, CaptureToolError, explain_failure


@pytest.mark.skipif(shutil.which("dumpcap") is None, reason="needs dumpcap (apt-get install tshark)")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_an_engine_killed_before_it_captures_says_by_what(tmp_path, sig) -> None:
    """Killed as it starts, the engine writes nothing: the message names the signal and leaves no file behind."""
    path, pidfile = tmp_path / "c.pcapng", tmp_path / "capture.pid"
    # The prefix runs before the engine (as 'ip netns exec' does in the simulated lab); here it kills itself.
    with pytest.raises(CaptureToolError, match=f"dumpcap failed on lo: killed by {sig.name} without a message"):
        CaptureProcess.start(path, "lo", "tcp", prefix=["sh", "-c", f"kill -{sig.name[3:]} $$", "sh"],
                             pidfile=pidfile)
    assert not path.exists() and not pidfile.exists()


def test_an_engine_that_says_why_is_quoted_and_an_odd_exit_is_named() -> None:
    said = explain_failure("x\nsomething broke\n", "eth0", "dumpcap", -9)
    assert str(said) == "dumpcap failed on eth0: something broke"
    assert str(explain_failure("", "eth0", "tshark", 2)) == "tshark failed on eth0: exited without a message"
    odd = explain_failure("", "eth0", "tshark", -200)
    assert str(odd) == "tshark failed on eth0: killed by signal 200 without a message"
