"""`python -m echolab.cli`: the echolab command."""

from echolab.cli import main

main()
