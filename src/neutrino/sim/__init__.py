"""neutrino.sim"""
