"""Parse models with sqlglot on the second core while the main process renders them.

A cold compile of a large project spends about half its time in sqlglot: ~0.17 s to import it and
~0.23 ms to parse each model. Neither depends on anything but the SQL text, so a forked child imports
sqlglot while the parent loads and renders the project, then parses what the parent sends it, and
returns the :class:`SqlAnalysis` results. The parent meanwhile links, inlines ephemerals and writes
nothing it would have to undo. Threads would not help: both jobs hold the GIL.

The worker is an optimisation only. Where ``os.fork`` does not exist, or the child dies, or it sends
garbage, :meth:`ParseWorker.analyze` parses in-process and the compile result is the same.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import struct
import threading
import time
from collections.abc import Sequence

from wfsql.sql_analysis import SqlAnalysis, analyze_sql

#: How long the parent waits for the worker before parsing in-process: far beyond the ~0.4 s a thousand
#: models take, so it only fires if the child hangs (e.g. a lock inherited from a thread across fork).
TIMEOUT_BASE_S = 30.0
TIMEOUT_PER_SQL_S = 0.01

#: Start a worker only when at least this many models need parsing; below it the fork and the second
#: import cost more than they save (the 100-model project parses in ~25 ms).
MIN_MODELS_FOR_WORKER = 200

_HEADER = struct.Struct("!Q")


def _write_all(fd: int, payload: bytes) -> None:
    view = memoryview(_HEADER.pack(len(payload)) + payload)
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, size: int, deadline: float | None = None) -> bytes:
    chunks: list[bytes] = []
    while size:
        if deadline is not None and not select.select([fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
            raise TimeoutError("parse worker did not answer in time")
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise EOFError("parse worker pipe closed early")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _read_message(fd: int, deadline: float | None = None) -> bytes:
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    return _read_exact(fd, size, deadline)


def _child(request_fd: int, reply_fd: int) -> None:
    """Runs in the forked process: import sqlglot now, parse when the SQL arrives, reply, exit."""
    try:
        analyze_sql("select 1")  # imports sqlglot while the parent renders
        sqls = pickle.loads(_read_message(request_fd))
        _write_all(reply_fd, pickle.dumps([analyze_sql(sql) for sql in sqls], pickle.HIGHEST_PROTOCOL))
    finally:
        os._exit(0)  # never run the parent's atexit hooks or flush its buffers


class ParseWorker:
    """One forked sqlglot parser; :meth:`analyze` may be called once."""

    def __init__(self, pid: int, request_fd: int, reply_fd: int) -> None:
        self._pid = pid
        self._request_fd = request_fd
        self._reply_fd = reply_fd
        self._used = False
        self._sqls: list[str] = []
        self._writer: threading.Thread | None = None
        self._deadline = 0.0

    @classmethod
    def start(cls) -> ParseWorker | None:
        """Fork the worker, or ``None`` where the platform cannot fork (the caller parses in-process)."""
        if not hasattr(os, "fork"):
            return None
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(request_write)
            os.close(reply_read)
            _child(request_read, reply_write)
        os.close(request_read)
        os.close(reply_write)
        return cls(pid, request_write, reply_read)

    def analyze(self, sqls: Sequence[str]) -> list[SqlAnalysis]:
        """Analyses in the order of ``sqls``; parses in-process if the worker fails in any way."""
        self.submit(sqls)
        return self.results()

    def submit(self, sqls: Sequence[str]) -> None:
        """Hand the worker its batch and return at once; :meth:`results` collects the answers."""
        if self._used:
            raise RuntimeError("a ParseWorker analyses one batch")
        self._used = True
        self._sqls = list(sqls)
        payload = pickle.dumps(self._sqls, pickle.HIGHEST_PROTOCOL)
        # The child reads only after its import; a thread keeps a full pipe from blocking the parent.
        self._writer = threading.Thread(target=self._send, args=(payload,), daemon=True)
        self._writer.start()
        self._deadline = time.monotonic() + TIMEOUT_BASE_S + TIMEOUT_PER_SQL_S * len(self._sqls)

    def results(self) -> list[SqlAnalysis]:
        """The submitted batch's analyses, waiting for the worker (at most until the deadline)."""
        if self._writer is None:
            raise RuntimeError("submit() a batch first")
        sqls = self._sqls
        try:
            results = pickle.loads(_read_message(self._reply_fd, self._deadline))
            if not isinstance(results, list) or len(results) != len(sqls):
                raise ValueError("parse worker returned a malformed reply")
        except (OSError, EOFError, ValueError, pickle.UnpicklingError):  # TimeoutError is an OSError
            results = None
        finally:
            self.close()  # reaps the child, or kills a hung one, which unblocks the writer thread
            self._writer.join()
        if results is None:
            results = [analyze_sql(sql) for sql in sqls]
        return results

    def _send(self, payload: bytes) -> None:
        try:
            _write_all(self._request_fd, payload)
        except OSError:  # the child died; analyze() falls back when the reply never comes
            pass
        finally:
            os.close(self._request_fd)
            self._request_fd = -1

    def close(self) -> None:
        """Release the pipes and reap the child (idempotent); a child still running is killed."""
        if self._pid <= 0:
            return
        if self._request_fd >= 0 and not self._used:
            os.close(self._request_fd)
            self._request_fd = -1
        os.close(self._reply_fd)
        try:
            finished, _ = os.waitpid(self._pid, os.WNOHANG)
            if finished == 0:
                os.kill(self._pid, 9)
                os.waitpid(self._pid, 0)
        except ChildProcessError:
            pass
        self._pid = 0

    def __del__(self) -> None:
        with contextlib.suppress(OSError):
            self.close()
