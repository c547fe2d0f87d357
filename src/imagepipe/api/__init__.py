"""The HTTP API: FastAPI app factory, dependencies, routes and error rendering."""
