"""``arena data``: the standard datasets' official files."""

from __future__ import annotations

import click

from .common import stdout


@click.group()
def data() -> None:
    """The standard datasets (mnist, fashion-mnist, cifar10, svhn) from their official files."""


@data.command("fetch")
@click.argument("names", nargs=-1, required=True)
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, envvar="ARENA_DATA",
              help="Where dataset files live (default: $ARENA_DATA, else $ARENA_HOME/data).")
@click.option("--force", is_flag=True, help="Download again even where a file with the right checksum is present.")
def fetch(names, data_dir, force) -> None:
    """Download datasets' official files (resumable, checksum-verified). Nothing else downloads.

    ARENA_DATA_MIRROR=URL fetches the same files from another server (URL/FILE).
    """
    import os

    from ..data import FILES, fetch as download
    from ..errors import InvalidInputError
    from ..progress import Reporter
    from .common import stderr

    unknown = [name for name in names if name not in FILES]
    if unknown:
        raise InvalidInputError(f"no official files are known for {unknown[0]!r}: fetch one of {', '.join(FILES)}")
    if data_dir:
        os.environ["ARENA_DATA"] = data_dir
    with Reporter(stderr) as reporter:
        for name in names:
            with reporter.task(f"fetching {name}", total=100) as advance:
                shown = [0]

                def progress(file: str, done: int, total: int | None) -> None:
                    percent = int(100 * done / total) if total else 0
                    if percent > shown[0]:
                        advance(percent - shown[0], f"{file}: {done / 1e6:.1f} MB")
                        shown[0] = percent

                paths = download(name, force=force, progress=progress)
            stdout.print(f"{name}: {len(paths)} official file{'s' * (len(paths) > 1)} in {paths[0].parent}, checksums "
                         "verified", highlight=False, markup=False, soft_wrap=True)
