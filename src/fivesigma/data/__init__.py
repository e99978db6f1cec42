"""fivesigma.data"""
