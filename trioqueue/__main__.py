"""``python -m trioqueue``: the command line (how ``run --workers`` starts its workers)."""

from trioqueue._cli import main

main()
