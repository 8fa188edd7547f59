"""`python scripts/aggregate.py ...`: tables and curves from run folders; the code and its documentation are in `offline_marl/aggregate.py`
(also `python -m offline_marl.aggregate`)."""
import sys

from offline_marl.aggregate import main

if __name__ == "__main__":
    sys.exit(main())
