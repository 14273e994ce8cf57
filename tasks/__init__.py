"""What Celery runs: thin, named tasks with one declared retry policy."""
