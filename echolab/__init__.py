"""echolab: measure what encrypted smart-speaker traffic gives away.

The toolkit is a set of libraries (``db``, ``prompts``, ``collector``,
``analysis``) with one command-line front end, ``echolab`` (``echolab.cli``).
This package holds only what every part shares: the lab directory
(``echolab.labdir``) and the error type the CLI turns into one-line messages
(``echolab.errors``).
"""

__version__ = "0.1.0"
