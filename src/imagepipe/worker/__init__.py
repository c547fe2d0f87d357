"""The Celery side: the app, the thin tasks and the processing service they call."""
