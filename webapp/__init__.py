"""The expert review web app: ``earlyrisk serve`` (see docs/REVIEW_APP.md)."""
