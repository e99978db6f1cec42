"""Configs shipped with fivesigma (the default analysis)."""

__all__: list[str] = []
