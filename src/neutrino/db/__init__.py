"""neutrino.db"""
