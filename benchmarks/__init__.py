"""Benchmarks of the workbench: each module runs from the repository root as ``python -m benchmarks.NAME``.

They stand on the installed ``ldw`` package (``ldw.testing`` builds their
synthetic data), print a table and write ``benchmarks/results/NAME.json``.
"""
