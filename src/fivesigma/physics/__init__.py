"""fivesigma.physics"""
