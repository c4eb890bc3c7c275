"""neutrino.ingest"""
