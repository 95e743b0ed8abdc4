"""A local PostgreSQL 16 from the `pgserver` wheel's binaries, on 127.0.0.1 at a free port, kept in a folder.

What needs a PostgreSQL on this machine starts one of these: the shop's demo database (`extract/shop/demo_postgres.py`)
and the instance database of `elt serve`. pgserver's own `get_server` listens on a Unix socket only, and Sling dials
TCP, so this drives the bundled `initdb` / `pg_ctl` itself. As root, the server runs as the unprivileged user
`pgserver` (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import warnings
from pathlib import Path
from types import TracebackType
from typing import Self

with warnings.catch_warnings():  # pgserver's import asks platformdirs for XDG_RUNTIME_DIR, unset in containers
    warnings.simplefilter("ignore")
    from pgserver._commands import POSTGRES_BIN_PATH

SYSTEM_USER = "pgserver"  # the user pgserver itself runs as under root
ADMIN_DATABASE = "postgres"  # the database initdb creates


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class LocalPostgres:
    """Start (initdb once), expose `.url`, stop on exit. `data_dir` keeps the cluster and its password.

    `superuser` is the role initdb creates (password in `<data_dir>/password`) and `database` the one `.url` names,
    created on the first start; a subclass sets both for its own use (the shop's demo server: `shop` / `shop`).
    """

    host = "127.0.0.1"
    superuser = "postgres"
    database = ADMIN_DATABASE
    label = "local PostgreSQL"  # how errors name the server

    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.pgdata = self.data_dir / "pgdata"
        self.port = port or free_port(self.host)
        self._password_file = self.data_dir / "password"
        self._socket_dir: Path | None = None
        self._user: str | None = None
        self._running = False

    def __repr__(self) -> str:  # never the password
        return f"{type(self).__name__}({self.host}:{self.port}/{self.database}, data_dir={self.data_dir})"

    def url_for(self, database: str) -> str:
        password = self._password_file.read_text().strip()
        # sslmode=disable: the local server has no certificate, and Sling's driver otherwise insists on SSL
        return f"postgresql://{self.superuser}:{password}@{self.host}:{self.port}/{database}?sslmode=disable"

    @property
    def url(self) -> str:
        return self.url_for(self.database)

    def _run(self, binary: str, *args: str) -> None:
        """Run a bundled binary as the server user; the error carries its output (which holds no password)."""
        command = [str(POSTGRES_BIN_PATH / binary), *args]
        result = subprocess.run(command, user=self._user, capture_output=True, text=True, timeout=60)
        if result.returncode != 0:
            log = self.pgdata / "server.log"
            tail = log.read_text()[-2000:] if log.is_file() else ""
            raise RuntimeError(
                f"{binary} failed for the {self.label} in {self.pgdata} (exit {result.returncode}):\n"
                f"{result.stdout}{result.stderr}{tail}"
            )

    def _prepare_user(self) -> None:
        if os.geteuid() != 0:
            return
        from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists(SYSTEM_USER)
        assert entry is not None
        self._user = SYSTEM_USER
        # the server user must traverse to its data dir and run the bundled binaries and libraries
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(POSTGRES_BIN_PATH)
        ensure_folder_permissions(POSTGRES_BIN_PATH, 0o055)
        ensure_folder_permissions(POSTGRES_BIN_PATH.parent / "lib", 0o044)
        for path in (self.data_dir, self.pgdata, self._password_file):
            if path.exists():
                os.chown(path, entry.pw_uid, entry.pw_gid)

    def _initdb(self) -> None:
        self._password_file.write_text(secrets.token_urlsafe(24))
        self._password_file.chmod(0o600)
        self.pgdata.mkdir(mode=0o700)
        self._prepare_user()
        self._run(
            "initdb",
            "-D",
            str(self.pgdata),
            "-U",
            self.superuser,
            f"--pwfile={self._password_file}",
            "--auth=scram-sha-256",
            "--encoding=UTF8",
            "--locale=C",
        )

    def start(self) -> Self:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if not (self.pgdata / "PG_VERSION").exists():
            if self.pgdata.exists():
                shutil.rmtree(self.pgdata)  # a half-made cluster from an interrupted initdb
            self._initdb()
            fresh = True
        else:
            self._prepare_user()
            fresh = False
        self._stop_leftover()
        # a short socket path: Unix sockets cap at ~107 bytes, and the data dir may be deep
        self._socket_dir = Path(tempfile.mkdtemp(prefix="pgsock-"))
        if self._user:
            entry = pwd.getpwnam(self._user)
            os.chown(self._socket_dir, entry.pw_uid, entry.pw_gid)
        options = f"-h {self.host} -p {self.port} -k {self._socket_dir}"
        log = str(self.pgdata / "server.log")
        try:
            self._run("pg_ctl", "-D", str(self.pgdata), "-l", log, "-o", options, "-w", "start")
            self._running = True
            if fresh and self.database != ADMIN_DATABASE:
                self._create_database()
        except BaseException:
            self.stop()  # `with` never reaches __exit__ when __enter__ raises
            raise
        return self

    def _stop_leftover(self) -> None:
        """A server left running on this data dir by a killed process would block the start: stop it."""
        status = subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.pgdata), "status"],
            user=self._user,
            capture_output=True,
        )
        if status.returncode == 0:
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")

    def _create_database(self) -> None:
        import psycopg

        with psycopg.connect(self.url_for(ADMIN_DATABASE), autocommit=True) as conn:
            conn.execute(f'create database "{self.database}"')

    def stop(self) -> None:
        if self._running:
            self._run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")
            self._running = False
        if self._socket_dir:
            shutil.rmtree(self._socket_dir, ignore_errors=True)
            self._socket_dir = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
