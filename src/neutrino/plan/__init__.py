"""neutrino.plan"""
