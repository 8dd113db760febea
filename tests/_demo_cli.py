"""Run the mlmyths CLI with the test-only "demo" myth registered (used in subprocess tests)."""
import sys

from mlmyths import cli, myths

myths.MYTHS["demo"] = myths.MythInfo("demo", "_demo_experiment", "A demo myth.", "Nobody, 2026")
if __name__ == "__main__":  # worker processes (spawn) import this file again: they must not run the CLI
    raise SystemExit(cli.main(sys.argv[1:]))
