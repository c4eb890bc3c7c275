"""neutrino.scenarios"""
