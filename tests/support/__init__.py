"""Helpers shared by test suites: the served emulator (`tests.support.emulator`) and worker processes."""
