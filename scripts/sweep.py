"""`python scripts/sweep.py ...`: sweeps of training jobs; the code and its documentation are in `offline_marl/sweep.py`
(also `python -m offline_marl.sweep`)."""
import sys

from offline_marl.sweep import main

if __name__ == "__main__":
    sys.exit(main())
