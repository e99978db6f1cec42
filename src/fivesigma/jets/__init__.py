"""fivesigma.jets"""
