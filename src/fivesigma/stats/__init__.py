"""fivesigma.stats"""
