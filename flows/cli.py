"""The `tlops` command line (typer): the app, its global options, and its commands, one module each in
`flows/commands/` (what they print: `flows/console.py`). It lives beside the flows it starts (the core `tlops/`
never imports orchestration); every command imports its libraries lazily, so `tlops --help`, config errors and
the read-only commands stay fast. `python -m flows.cli ARGS` is `tlops ARGS`."""

from __future__ import annotations

import re
import sys

import typer

from flows import console
from flows.commands import _common, register_all
from flows.commands._common import HELP
from tlops.errors import TlopsError

# typer 0.29's help prints a value type for flags ("--json <bool>"), which take no value, and "inputs... <list[str]>"
# for repeated arguments: show no type for flags, the element type for repeated arguments
_option_type, _argument_type = typer.core.TyperOption.display_type_rich, typer.core.TyperArgument.display_type_rich
typer.core.TyperOption.display_type_rich = lambda self, ctx: None if self.is_flag else _option_type(self, ctx)
typer.core.TyperArgument.display_type_rich = lambda self, ctx: re.sub(r"^<list\[(.+)\]>$", r"<\1>", _argument_type(self, ctx))

# no rich tracebacks with local variables: they would print credentials; `console.masked_excepthook` prints plain ones, masked
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False, context_settings=HELP,
                  help="Transfer learning from pretrained models, as a governed pipeline.")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"tlops {version('tlops')}")
        raise typer.Exit()


@app.callback()
def _main(show_version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                            help="print the version and exit"),
          verbose: bool = typer.Option(False, "--verbose", "-v", help="also show Prefect, Great Expectations and MLflow logs, "
                                       "and the download and weight-loading bars of MLflow and Hugging Face"),
          quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress bars or status lines: errors, warnings and the "
                                     "result only")) -> None:
    """tlops: build custom models from pretrained ones; tracked in MLflow, orchestrated by Prefect."""
    if verbose and quiet:
        raise console.failed(TlopsError("give -v (more output) or -q (less), not both"), 2)
    console.set_verbosity(verbose, quiet)
    sys.excepthook = console.masked_excepthook
    console.quiet_third_party()  # before any command imports MLflow, Hugging Face or transformers
    _common.command_started()


register_all(app)


if __name__ == "__main__":
    app()
