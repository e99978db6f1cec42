"""Configs shipped with fivesigma (the default analysis)."""
