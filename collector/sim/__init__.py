"""The simulated lab: an Echo and an Alexa cloud in network namespaces.

``SimLab.up()`` / ``SimLab.load()`` / ``down()`` manage it (echolab.collector.sim.lab);
``SimLab.sink()`` is the audio output that makes its Echo hear a prompt;
``echolab.collector.sim.synthetic`` writes captures from the same model without
namespaces. See docs/simulation.md.
"""

from echolab.collector.sim.errors import EchoBusy, NamespaceUnavailable, ParamsError, SimError, SimNotRunning
from echolab.collector.sim.lab import SimLab, SimStatus, down, status, up
from echolab.collector.sim.sink import SimulatedSink

__all__ = ["EchoBusy", "NamespaceUnavailable", "ParamsError", "SimError", "SimLab", "SimNotRunning", "SimStatus",
           "SimulatedSink", "down", "status", "up"]
