"""The Celery side: the app and the thin tasks that call the services (render, re-render,
extra formats, reconciler, on-demand renditions, webhooks, retention)."""
