"""neutrino.linux"""
