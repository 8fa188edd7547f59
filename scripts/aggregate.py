"""`python scripts/aggregate.py ...`: tables and curves from run folders; the code and its documentation are in
`offline_marl/aggregate.py` (also `python -m offline_marl.aggregate`)."""
import sys

from offline_marl.aggregate import main
from offline_marl.config import run_cli

if __name__ == "__main__":
    run_cli(lambda: sys.exit(main()))
