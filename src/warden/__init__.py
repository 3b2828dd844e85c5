"""Warden: a decision gateway for AI in financial services."""

__version__ = "0.1.0"
