"""userstream: one permission-checked, resumable event stream per user."""

__version__ = "0.1.0"
