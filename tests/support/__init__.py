"""Helpers for tests: real servers on free ports, started and stopped by the tests themselves."""
