"""Exceptions the engine raises; each message says what the user should do next."""

from __future__ import annotations


class EngineError(Exception):
    """Base class of every error the engine reports to a user."""


class ModelUnavailableError(EngineError):
    """A model's files are missing or cannot be loaded (offline, wrong folder, wrong format)."""


class ConfigError(EngineError, ValueError):
    """A configuration file or override is invalid."""
