"""imagepipe: upload an image, get a task id at once, previews made in the background."""

__version__ = "0.1.0"
