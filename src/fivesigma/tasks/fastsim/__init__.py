"""``task: fastsim``: generative surrogates of the jet detector response and of calorimeter showers."""
