"""A real, throwaway PostgreSQL server for the tests: Debian's ``postgresql`` binaries
(``apt-get install postgresql``; ``.ci/run`` installs them), a cluster in a temporary folder,
listening on 127.0.0.1 at a free port, trust authentication, stopped when the session ends.

When the process runs as root (CI containers), the server runs as the ``postgres`` user the
package creates, since PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
import uuid
from pathlib import Path

USER = "arena"


def binaries() -> Path | None:
    """The folder of ``initdb`` and ``postgres``, or None where PostgreSQL is not installed."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    """One running cluster; :meth:`database` creates a fresh database and returns its URL."""

    def __init__(self) -> None:
        import tempfile

        bindir = binaries()
        if bindir is None:
            raise RuntimeError("PostgreSQL is not installed: apt-get install postgresql (Debian)")
        # Its own folder in the system's temporary folder: pytest's folders are private to
        # their user, and the server may run as another (``postgres``).
        self.folder = folder = Path(tempfile.mkdtemp(prefix="arena-postgres-"))
        self.port = _free_port()
        data, sockets = folder / "data", folder / "sockets"
        sockets.mkdir(parents=True, exist_ok=True)
        as_user: list[str] = []
        if os.getuid() == 0:
            as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(folder, "postgres")
            shutil.chown(sockets, "postgres")
        subprocess.run([*as_user, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", USER, "--no-sync",
                        "-E", "UTF8"], check=True, capture_output=True)
        self.process = subprocess.Popen(
            [*as_user, str(bindir / "postgres"), "-D", str(data), "-p", str(self.port), "-k", str(sockets),
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "max_connections=200"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self._wait()

    def _wait(self, timeout: float = 60.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                psycopg.connect(self._dsn("postgres")).close()
                return
            except psycopg.OperationalError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL did not start: {self.process.stderr.read().decode()[-1000:]}")
                time.sleep(0.2)

    def _dsn(self, database: str) -> str:
        return f"host=127.0.0.1 port={self.port} user={USER} dbname={database}"

    def database(self) -> str:
        """A new, empty database; its SQLAlchemy URL."""
        import psycopg

        name = f"test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self._dsn("postgres"), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name}")
        return f"postgresql+psycopg://{USER}@127.0.0.1:{self.port}/{name}"

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)
