"""fivesigma.metrics"""
