"""neutrino.services"""
