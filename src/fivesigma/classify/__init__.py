"""fivesigma.classify"""
