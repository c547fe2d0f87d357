"""Use cases shared by the API and the worker: live status, idempotency, webhooks."""
