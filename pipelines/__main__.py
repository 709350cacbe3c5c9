"""``python -m ldw``: the ``ldw`` command line."""

from ldw.cli.main import main

main()
