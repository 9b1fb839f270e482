"""Puts the network guard into every Python process the tests start (this dir is on PYTHONPATH)."""

import netguard

netguard.install()
