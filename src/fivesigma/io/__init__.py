"""fivesigma.io: every reader and writer.

- :mod:`fivesigma.io.events`: event tables from ROOT (TTree and RNTuple), Parquet, HDF5
  and CSV, chunked, only the needed columns.
- :mod:`fivesigma.io.jets`: jet constituents from fivesigma's ROOT files, the Top Quark
  Tagging HDF5 files and EnergyFlow ``.npz`` files.
- :mod:`fivesigma.io.writers`: chunked atomic Parquet/ROOT output.
"""
