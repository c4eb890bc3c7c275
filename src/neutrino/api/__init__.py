"""neutrino.api"""
