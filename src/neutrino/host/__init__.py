"""neutrino.host"""
