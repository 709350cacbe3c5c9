"""Orchestration, analysis and the ldw command line."""
