"""Run the callback matrix's cases under ``strategy=ddp`` on 2 CPU processes: ``python matrix_ddp_script.py
OUT_DIR NAME...``. Lightning's launcher starts rank 1 by running this script again; both ranks fit every
case in turn (one process group) and write ``OUT_DIR/<name>.rank<r>.pt``."""

import sys
from pathlib import Path

from matrix_cases import fit_ddp

if __name__ == "__main__":
    out = Path(sys.argv[1])
    for name in sys.argv[2:]:
        fit_ddp(name, out, "ddp")
