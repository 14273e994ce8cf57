"""The `extendq` command line: parses options, prints tables, and calls tasks and worker."""
