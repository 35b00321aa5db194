"""The engine tests' fixtures (fake tools on a PATH, a project with its world), shared here."""

from __future__ import annotations

from engine.conftest import _knotd, certs, fake_bin, project

__all__ = ["_knotd", "certs", "fake_bin", "project"]
