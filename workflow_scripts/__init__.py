"""scaling-dynamics: the tested package behind the Snakemake workflow.

Every module that a rule runs is also an entry point: ``python -m workflow_scripts.<module> --help``.
"""
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
