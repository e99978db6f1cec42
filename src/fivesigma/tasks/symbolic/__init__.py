"""``task: symbolic``: formulas from data (symbolic regression)."""
