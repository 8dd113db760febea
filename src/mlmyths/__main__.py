"""``python -m mlmyths``: the command line. Guarded, because worker processes started with
``spawn`` (``--workers N``) import the main module again and must not run the CLI."""
from mlmyths.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
