"""fivesigma.tasks.anomaly: LHC Olympics 2020 R&D style resonant anomaly detection."""
