"""Helpers shared by the tests; :mod:`tests.support.services` is the one place that starts
services (unit tests never import it)."""
