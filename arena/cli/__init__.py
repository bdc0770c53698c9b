"""The ``arena`` command line: a group of small command modules, each imported when its
command runs (``arena --help`` imports none of them; reading results imports no torch and no
plugin module). Commands added by plugins (``register_commands``) are looked up when a name is
not one of Arena's own."""

from __future__ import annotations

import importlib
from typing import Any

import click

from .. import __version__
from ..errors import ArenaError
from ..text import markup, terminal_safe
from .common import STDERR as stderr, STDOUT as stdout  # noqa: F401  (the consoles, see .common)

#: name -> (module, attribute, one-line help): what ``arena --help`` lists without importing.
COMMANDS = {
    "run": ("run", "run", "Evaluate attacks against defenses, or score generators, and store the results."),
    "leaderboard": ("board", "leaderboard", "Show the leaderboard of every track (or one, with --track)."),
    "compare": ("board", "compare", "Compare two defenses, or two attacks, on the same test points and seeds."),
    "results": ("stored", "results", "List stored results: the current run of each result (see --history)."),
    "show": ("stored", "show", "Show one run in detail."),
    "check": ("admin", "check", "Run the costlier integrity checks on a stored result and store what they find."),
    "db": ("admin", "db", "Look after the results database."),
    "plugins": ("admin", "plugins", "List the installed plugins and tracks, and plugins that failed to load."),
    "export": ("bundle", "export", "Write stored runs to one bundle file that another database can import."),
    "import": ("bundle", "import_", "Check a bundle from arena export and merge its runs into this database."),
    "data": ("data", "data", "The standard datasets (mnist, fashion-mnist, cifar10, svhn) from their official files."),
    "new": ("admin", "new", "Write an installable plugin package to start from: attack, defense, generator or dataset."),
}


class ArenaGroup(click.Group):
    """Turns Arena errors into one line (``Error: ...``); ``--debug`` shows the traceback.
    Commands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands:
            return self.commands[name]
        if name in COMMANDS:
            module, attribute, _ = COMMANDS[name]
            command = getattr(importlib.import_module(f".{module}", __name__), attribute)
            self.add_command(command, name)
            return command
        if not ctx.resilient_parsing:
            _register_plugin_commands()
        return self.commands.get(name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][2]) for name in sorted(COMMANDS)]
        rows += [(name, command.get_short_help_str()) for name, command in sorted(self.commands.items())
                 if name not in COMMANDS]
        with formatter.section("Commands"):
            formatter.write_dl(rows)
        formatter.write_paragraph()
        formatter.write_text("Installed plugins may add commands of their own: run them by name.")

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except ArenaError as exc:
            if ctx.meta.get("arena.debug"):
                raise
            raise click.ClickException(terminal_safe(exc)) from None
        except KeyboardInterrupt:
            raise click.Abort() from None
        except Exception as exc:
            if ctx.meta.get("arena.debug"):
                raise
            raise click.ClickException(
                f"unexpected {type(exc).__name__}: {terminal_safe(exc)} (run again with --debug for the traceback)"
            ) from None


def _debug_flag(ctx: click.Context, _param: click.Parameter, value: bool) -> bool:
    ctx.meta["arena.debug"] = value
    return value


@click.group(cls=ArenaGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_debug_flag,
              help="Show full tracebacks instead of one-line errors.")
@click.version_option(__version__, package_name="arena-bench", prog_name="arena")
def cli() -> None:
    """Arena: adversarial attacks against defenses, generative models against each other."""


_PLUGIN_COMMANDS_ADDED = False


def _register_plugin_commands() -> None:
    """Add the commands of every plugin's ``register_commands`` (loads every plugin, once)."""
    global _PLUGIN_COMMANDS_ADDED
    if _PLUGIN_COMMANDS_ADDED:
        return
    _PLUGIN_COMMANDS_ADDED = True
    from ..plugins import get_registry

    registry = get_registry()
    if registry.manager is None:
        return
    for impl in registry.manager.hook.register_commands.get_hookimpls():
        try:
            impl.function(**({"cli": cli} if "cli" in impl.argnames else {}))
        except Exception as exc:  # a broken plugin command must not break the CLI
            stderr.print(f"[yellow]warning:[/] plugin {markup(impl.plugin_name)} failed to add commands: {markup(exc)}",
                         highlight=False)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (a command is looked up and built inside the group's
    ``invoke``, so its errors are one line too)."""
    try:
        cli.main(args=argv, prog_name="arena")
    finally:
        # The process ends now: spare the interpreter's exit a last cycle collection over
        # everything the command built (a tenth of a second or more after a large leaderboard).
        import gc

        gc.freeze()


if __name__ == "__main__":
    main()
