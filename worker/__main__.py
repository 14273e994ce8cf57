"""`python -m worker` runs the `extendq` command line."""

from worker.cli import main

main()
