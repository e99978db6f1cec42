"""fivesigma.report"""
