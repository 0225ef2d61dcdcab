"""Command-line options written once, as dataclass fields: :func:`flag` makes a field that is also an option
(or the argument) of a typer command, and :func:`signature` builds the command's signature from such
fields, so a command's options have one source. cgan-train's :class:`~cgan.train.options.TrainConfig`
and cgan-export's :class:`~cgan.export.options.ExportOptions` are read this way (cgan-run's
:class:`~cgan.runtime.run_options.RunOptions` does the same for argparse in the torch-free runtime).
Importing this module imports neither torch nor typer."""

from __future__ import annotations

import dataclasses
import inspect
import typing
from dataclasses import field
from typing import Any, Callable


def flag(default: Any, decls: str, *, help: str, parse: Callable[[Any], Any] | None = None,
         cli_type: Any = None, metavar: str | None = None, argument: bool = False) -> Any:
    """A field that is also a command-line option: ``decls`` as typer takes them (``--x`` or ``--x/--no-x``,
    space-separated); ``parse`` turns the command-line value (of ``cli_type``, default: the field's type) into
    the field's; ``metavar``: how ``--help`` shows the value. ``argument``: the command's positional argument
    instead (``decls`` is then its name)."""
    cli = {"decls": decls, "help": help, "parse": parse, "type": cli_type, "metavar": metavar, "argument": argument}
    return field(default=default, metadata={"cli": cli})


def flag_fields(cls: type) -> list[dataclasses.Field]:
    """The fields of dataclass ``cls`` that are command-line options, in the order ``--help`` lists them."""
    return [f for f in dataclasses.fields(cls) if "cli" in f.metadata]


def parsed(cls: type, values: dict[str, Any]) -> dict[str, Any]:
    """``values`` as typer gives them (one per flag field of ``cls``), each turned into its field's type."""
    out = dict(values)
    for f in flag_fields(cls):
        parse = f.metadata["cli"]["parse"]
        if parse is not None:
            out[f.name] = parse(out[f.name])
    return out


def signature(cls: type, *, context: bool = False) -> inspect.Signature:
    """A command's signature as typer reads it: one typer option (or argument) per flag field of ``cls``, with
    the field's default, type and help; first a ``ctx`` parameter when ``context`` (to ask which flags were given)."""
    import typer

    hints = typing.get_type_hints(cls)
    params = []
    if context:
        params.append(inspect.Parameter("ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context))
    for f in flag_fields(cls):
        cli = f.metadata["cli"]
        if cli["argument"]:
            default = typer.Argument(f.default, help=cli["help"], show_default=True)
        else:
            shown = {"metavar": cli["metavar"]} if cli["metavar"] else {}
            default = typer.Option(f.default, *cli["decls"].split(" "), help=cli["help"], **shown)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=cli["type"] or hints[f.name],
                                        default=default))
    return inspect.Signature(params)


def command(fn: Callable[..., Any], cls: type, *, context: bool = False) -> Callable[..., Any]:
    """``fn`` (taking ``**values``) given the signature of ``cls``'s flag fields, ready for ``app.command``."""
    fn.__signature__ = signature(cls, context=context)
    fn.__annotations__ = {p.name: p.annotation for p in fn.__signature__.parameters.values()}
    return fn
