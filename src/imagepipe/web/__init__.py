"""The upload page at ``/``: static files served by the app itself (no CDN)."""
