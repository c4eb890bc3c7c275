"""neutrino.views"""
