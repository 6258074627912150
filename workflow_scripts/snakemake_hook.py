"""Name the file, line and column of a YAML syntax error in a config Snakemake reads itself.

Snakemake loads ``--configfile`` files before the Snakefile runs, so a YAML syntax error there
reaches the user as only "Config file is not valid JSON or YAML" (no file, no line), and no code
of the workflow runs in time to say more. This hook wraps Snakemake's loader
(``snakemake.common.configfile._load_configfile``) so that the error says what ``config check``
says: ``<file>, line L, column C: YAML syntax error: ...``. Nothing else changes.

It is loaded at interpreter start by a one-line ``.pth`` file that bin/setup writes into the
virtual environment's site-packages; until Snakemake's loader module is imported it only watches
for that one import (a meta-path finder that returns None for every other name).

    python -m workflow_scripts.snakemake_hook install    # write the .pth (bin/setup does this)
"""
from __future__ import annotations

import sys

TARGET = "snakemake.common.configfile"
PTH_NAME = "scaling_dynamics_snakemake_hook.pth"
# a .pth line that starts with "import" is executed by the site module at interpreter start
PTH_LINE = "import workflow_scripts.snakemake_hook as _hook; _hook.install()\n"


def _patch(module) -> None:
    original = module._load_configfile
    if getattr(original, "_names_yaml_errors", False):
        return

    def _load_configfile(configpath_or_obj, filetype="Config"):
        try:
            return original(configpath_or_obj, filetype)
        except Exception as e:
            import os

            import yaml

            if not isinstance(configpath_or_obj, (str, os.PathLike)) or \
                    not isinstance(e.__context__, yaml.YAMLError):
                raise
            from .config import ConfigError, read_yaml

            try:  # parsed again, from the file: the marks then name it, line and column
                read_yaml(configpath_or_obj)
            except ConfigError as named:
                from snakemake_interface_common.exceptions import WorkflowError

                raise WorkflowError(str(named)) from None
            raise

    _load_configfile._names_yaml_errors = True
    module._load_configfile = _load_configfile


class _Finder:
    """A meta-path finder (no importlib.abc base: this module loads at every interpreter start and
    stays cheap) that finds nothing itself: when Snakemake's loader module is imported, it patches
    it once loaded."""

    def find_spec(self, name, path=None, target=None):
        if name != TARGET:
            return None
        import importlib.util

        sys.meta_path.remove(self)  # once: let the ordinary finders find the real module
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            _patch(module)

        spec.loader.exec_module = exec_and_patch
        return spec


def install() -> None:
    """Patch Snakemake's config loader now, or as soon as it is imported."""
    if TARGET in sys.modules:
        _patch(sys.modules[TARGET])
    elif not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


def write_pth(site_dir) -> str:
    """Write the .pth that loads this hook into ``site_dir``; return its path."""
    from pathlib import Path

    path = Path(site_dir) / PTH_NAME
    path.write_text(PTH_LINE)
    return str(path)


def main(argv=None) -> int:
    import argparse
    import sysconfig

    parser = argparse.ArgumentParser(prog="python -m workflow_scripts.snakemake_hook",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["install"])
    parser.add_argument("--site-dir", default=sysconfig.get_paths()["purelib"],
                        help="where to write the .pth (default: this interpreter's site-packages)")
    args = parser.parse_args(argv)
    print(f"wrote {write_pth(args.site_dir)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
