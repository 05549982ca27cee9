"""Load and quality harness: `python -m bench SCENARIO [options] --json OUT`."""
