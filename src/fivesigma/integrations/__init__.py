"""Bridges to other frameworks of the field; each module imports its framework lazily.

* :mod:`fivesigma.integrations.coffea`: score events with a fivesigma model bundle inside
  a coffea processor (awkward in, awkward out; eager or in ``dask_awkward`` partitions).
"""

from __future__ import annotations
