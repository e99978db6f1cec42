"""fivesigma.training"""
