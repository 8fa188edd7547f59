"""`python scripts/reproduce.py ...`: the paper's coordination findings, end to end; the code and its documentation
are in `offline_marl/reproduce.py` (also `python -m offline_marl.reproduce`)."""
import sys

from offline_marl.reproduce import main

if __name__ == "__main__":
    sys.exit(main())
