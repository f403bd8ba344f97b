"""`python -m echolab`: the echolab command."""

from echolab.cli import main

main()
