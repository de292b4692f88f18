"""``python -m trioqueue``: the command line (how ``run --workers`` starts its workers)."""

from trioqueue._cli import main

if __name__ == "__main__":
    main()
