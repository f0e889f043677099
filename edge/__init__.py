"""edge: a self-hosted, real-time website personalization edge server."""

from __future__ import annotations

__version__ = "0.1.0"
