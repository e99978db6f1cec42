"""fivesigma.generate"""
