"""`python -m extendq` runs the `extendq` command line."""

from extendq.cli.main import main

main()
