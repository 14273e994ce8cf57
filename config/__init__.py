"""Process wiring: settings, the Celery app and logging; the only code that reads the environment."""
