#!/usr/bin/env python3
"""A scopevault client using only the Python standard library (docs/protocol.md).

    python3 client.py [--socket PATH] [--timeout SECONDS] health
    python3 client.py [--socket PATH] [--timeout SECONDS] tasks
    python3 client.py [--socket PATH] [--timeout SECONDS] fetch TASK [CREDENTIAL]
    printf '%s\\n' "$TICKET" | python3 client.py [--socket PATH] [--timeout SECONDS] redeem

`redeem` reads the ticket from stdin (one trailing newline is ignored), never from the
command line: any user can read a process's arguments (/proc/PID/cmdline, `ps`) and redeem
the ticket first. A ticket given as an argument is refused, and nothing is sent. (`printf` is
built into sh and bash, so the ticket is in no process's arguments on the way either.)

Prints the response as JSON. Exit status: 0 ok; 5 the daemon refused (`busy` included: retry
later), sent something that is not a valid response, or did not answer within the timeout
(1 to 3600 s, default 60, for the connection, the request and its whole answer together);
2 usage, or no connection (no daemon there, or one this client refuses to talk to).
Whatever it prints from the daemon has its control, bidirectional and invisible characters
escaped. Use it as a module too:

    from client import ScopevaultClient
    with ScopevaultClient() as sv:
        cred = sv.fetch("checkout-flow")["credentials"][0]
        login(cred["fields"]["username"], cred["secrets"]["password"])
"""
import json
import math
import os
import socket
import stat
import struct
import sys
import time
import unicodedata

MAX_RESPONSE = 16 * 1024 * 1024
DEFAULT_TIMEOUT = 60
MAX_TIMEOUT = 3600
# Longest ticket read from stdin (a ticket is `svt1_` and 43 characters).
MAX_TICKET = 4096
# Deepest nesting of arrays and objects in an answer, as the binary's JSON parser (serde_json) allows.
MAX_DEPTH = 127


class ScopevaultError(Exception):
    """The daemon refused: `code` is the stable error code (docs/protocol.md)."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class InvalidResponse(Exception):
    """The daemon's answer is not one valid version-1 response line."""

    def __init__(self, why):
        super().__init__(f"the daemon's answer is not a valid response ({why}); is it a scopevault daemon of protocol version 1?")


class NoAnswer(Exception):
    """The daemon did not take the connection, or did not answer, within the timeout."""


# Shown escaped besides every control (Cc), format (Cf: bidirectional, zero-width) and
# separator character but the space: the blank or default-ignorable ones of other categories,
# as the scopevault binary escapes them (README, "Exit codes").
_INVISIBLE = set(map(ord, "\u034f\u115f\u1160\u17b4\u17b5\u2800\u3164\uffa0")) | set(range(0x180B, 0x1810)) | set(range(0xFE00, 0xFE10))


def escape(text):
    """`text` as the binary shows a value read from another program: control, bidirectional
    and invisible characters written as Rust writes them (`\\n`, `\\u{1b}`, `\\u{202e}`), so a
    daemon's message cannot drive the terminal, forge a line or reorder one."""
    out = []
    for ch in str(text):
        cat = unicodedata.category(ch)
        if ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif cat in ("Cc", "Cf", "Zl", "Zp") or (cat == "Zs" and ch != " ") or ord(ch) in _INVISIBLE:
            out.append("\\u{%x}" % ord(ch))
        else:
            out.append(ch)
    return "".join(out)


def _fits_a_double(n):
    try:
        float(n)
    except OverflowError:
        return False
    return True


def check_values(value):
    """InvalidResponse unless `value` (parsed JSON) is what the binary's parser accepts too:
    arrays and objects nested at most MAX_DEPTH deep, no string (key or value) holding a lone
    surrogate (`\\ud800`, which is no character and cannot be written out as UTF-8), no number
    out of range (`1e999`, `NaN`, `Infinity`: Python reads them as floats that are no JSON; an
    integer past the range of a double, which Python reads exactly)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise InvalidResponse("a string with a lone surrogate, which is no character") from None
        elif isinstance(v, float) and not math.isfinite(v):
            raise InvalidResponse("a number out of range")
        elif isinstance(v, int) and not isinstance(v, bool) and not _fits_a_double(v):
            # Python reads any integer exactly; the binary (and JSON.parse) refuse one past
            # the range of a double (`1` and 400 zeros).
            raise InvalidResponse("a number out of range")
        elif isinstance(v, (dict, list)):
            if depth > MAX_DEPTH:
                raise InvalidResponse(f"arrays and objects nested deeper than {MAX_DEPTH}")
            if isinstance(v, dict):
                stack.extend((k, depth) for k in v)
                stack.extend((x, depth + 1) for x in v.values())
            else:
                stack.extend((x, depth + 1) for x in v)


def parse_response(line):
    """The response in `line`, or InvalidResponse: one JSON object, UTF-8, with `"v": 1`, a
    boolean `ok`, and for a refusal an `error` object whose `code` and `message` are strings;
    nested at most MAX_DEPTH deep, without lone surrogates or numbers out of range
    (check_values). A refusal is raised as ScopevaultError."""
    try:
        response = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise InvalidResponse("not UTF-8") from None
    except RecursionError:
        raise InvalidResponse(f"arrays and objects nested deeper than {MAX_DEPTH}") from None
    except ValueError:
        raise InvalidResponse("not JSON") from None
    check_values(response)
    if not isinstance(response, dict):
        raise InvalidResponse("not a JSON object")
    v = response.get("v")
    if type(v) is not int or v != 1:
        raise InvalidResponse("its `v` is not 1")
    ok = response.get("ok")
    if type(ok) is not bool:
        raise InvalidResponse("its `ok` is not true or false")
    if not ok:
        err = response.get("error")
        if not isinstance(err, dict) or not isinstance(err.get("code"), str) or not isinstance(err.get("message"), str):
            raise InvalidResponse("a refusal without an error code and message")
        raise ScopevaultError(err["code"], err["message"])
    return response


def default_socket():
    if "SCOPEVAULT_SOCKET" in os.environ:
        return os.environ["SCOPEVAULT_SOCKET"]
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and os.geteuid() != 0:
        return os.path.join(runtime, "scopevault", "scopevault.sock")
    return "/run/scopevault/scopevault.sock"


def check_peer(sock, path):
    """Refuse a socket whose path or answering process is not one to trust with a secret, as
    the scopevault client does (docs/protocol.md, "Who the client talks to"): no symbolic
    link on the way to the socket's directory, and the peer (SO_PEERCRED) runs as root, as
    this user, or as the owner of the socket's directory when that directory and its parent
    are writable by their owners only and the parent belongs to root or this user."""
    directory = os.path.dirname(os.path.abspath(path))
    walked = "/"
    for part in directory.strip("/").split("/"):
        if not part:
            continue
        walked = os.path.join(walked, part)
        if stat.S_ISLNK(os.lstat(walked).st_mode):
            raise PermissionError(f"refusing to talk to {path}: {walked} is a symbolic link; nothing was sent")
    _pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    me = os.geteuid()
    if uid in (0, me):
        return
    d, parent = os.lstat(directory), os.lstat(os.path.dirname(directory))
    owners_only = not (d.st_mode & 0o022) and not (parent.st_mode & 0o022)
    if uid == d.st_uid and owners_only and parent.st_uid in (0, me):
        return
    raise PermissionError(f"refusing to talk to {path}: it is answered by uid {uid}, neither root, you, nor the owner of a private socket directory; nothing was sent")


class ScopevaultClient:
    """One connection to the daemon. `timeout` (seconds) bounds each exchange as a whole: the
    connection and the first request with its whole answer, then each later request with its
    answer. A daemon stopped (`kill -STOP`), hung, or sending its answer a byte at a time
    cannot hold the client longer: past the bound it closes the connection and raises
    NoAnswer, used with `with` or not (so does any failure but a refusal: `call`)."""

    def __init__(self, path=None, timeout=DEFAULT_TIMEOUT):
        self.path = path or default_socket()
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.buf = b""
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._connect()
            check_peer(self.sock, self.path)
        except BaseException:
            self.sock.close()
            raise

    def _left(self, stage="accepted the connection but did not answer"):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise NoAnswer(f"the daemon at {self.path} {stage} within {self.timeout:g} s; is it stopped or hung?")
        self.sock.settimeout(left)
        return left

    def _connect(self):
        # A full queue of pending connections makes connect() on a Unix socket fail with
        # EAGAIN at once under a timeout: try again until the deadline.
        while True:
            self._left("did not accept the connection")
            try:
                return self.sock.connect(self.path)
            except (BlockingIOError, socket.timeout):
                time.sleep(0.05)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def _read_line(self):
        while b"\n" not in self.buf:
            self._left()
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue  # _left() says whether the deadline has passed
            if not chunk:
                raise ConnectionError("the daemon closed the connection without an answer")
            self.buf += chunk
            if len(self.buf) > MAX_RESPONSE:
                raise InvalidResponse("longer than 16 MiB")
        line, self.buf = self.buf.split(b"\n", 1)
        return line[:-1] if line.endswith(b"\r") else line

    def call(self, op, **fields):
        return self._call(op, fields)

    def _call(self, op, fields, check=None):
        """Send one request and return its answer, after `check(answer)`. A refusal (ScopevaultError) is an answer: the
        connection stays open for the next request. Any other failure (NoAnswer, an answer that
        is not valid, a broken connection) closes the connection before it is raised, `with` or
        not: a request the daemon has not taken yet is then never decided, and nothing it sends
        later is read as the answer to another request."""
        if self.sock.fileno() == -1:
            raise ConnectionError(
                f"the connection to the daemon at {self.path} was closed after an earlier failure; "
                "make a new ScopevaultClient"
            )
        try:
            response = self._exchange(op, fields)
            if check:
                check(response)
            return response
        except ScopevaultError:
            raise
        except BaseException:
            self.close()
            raise

    def _exchange(self, op, fields):
        request = {"v": 1, "op": op}
        request.update({k: v for k, v in fields.items() if v is not None})
        try:
            self._left()
            self.sock.sendall(json.dumps(request).encode("utf-8") + b"\n")
        except socket.timeout:
            self._left()
            raise
        except OSError as e:
            # A daemon at its connection limit answers `busy` and closes before it reads
            # anything: the write fails (EPIPE, ECONNRESET) with that answer still unread.
            # Read it, so the client says `busy` (retry later), not "broken pipe".
            try:
                line = self._read_line()
            except Exception:
                raise e from None
            finally:
                self.close()
            parse_response(line)
            raise
        line = self._read_line()
        if self.buf:
            # One request, one answer line: more is not a daemon of this protocol.
            raise InvalidResponse("more than one answer line to one request")
        response = parse_response(line)
        # The next request's bound starts now (the first one's included the connection).
        self.deadline = time.monotonic() + self.timeout
        return response

    def health(self):
        return self.call("health")

    def tasks(self):
        """The tasks this user may fetch: InvalidResponse (the connection closed, as for any
        other failure) for an answer whose `tasks` is not a list."""
        return self._call("tasks", {}, check_tasks)["tasks"]

    def fetch(self, task, credential=None):
        """The credentials of `task` (only `credential`, when given): InvalidResponse for an
        answer that is for another task or holds another credential."""
        return self._call("fetch", {"task": task, "credential": credential}, lambda r: check_fetch(r, task, credential))

    def redeem(self, ticket, credential=None):
        """The credentials the ticket is for (only `credential`, when given). The ticket does
        not say its task here: compare the answer's `task` with the one it was issued for."""
        return self._call("fetch", {"ticket": ticket, "credential": credential}, lambda r: check_fetch(r, None, credential))


def check_tasks(response):
    """InvalidResponse unless the `tasks` answer's `tasks` is a list."""
    if not isinstance(response.get("tasks"), list):
        raise InvalidResponse("`tasks` is not a list")


def check_fetch(response, task, credential):
    """InvalidResponse unless the `fetch` answer is for `task` (when known) and its credentials
    are a list, each named `credential` when one was asked for: an answer to another request
    (another task's, a fake daemon's) is never used."""
    if task is not None and response.get("task") != task:
        raise InvalidResponse(f"an answer for another task than {task}, the one asked for")
    creds = response.get("credentials")
    if not isinstance(creds, list):
        raise InvalidResponse("`credentials` is not a list")
    if credential is not None and any(not isinstance(c, dict) or c.get("name") != credential for c in creds):
        raise InvalidResponse(f"an answer holding another credential than {credential}, the one asked for")


def parse_timeout(text):
    """`--timeout SECONDS`: a whole number from 1 to 3600, as the binary's."""
    if not text.isdigit() or not 1 <= int(text) <= MAX_TIMEOUT:
        raise ValueError(f"--timeout takes a whole number of seconds from 1 to {MAX_TIMEOUT}, not {escape(text)}")
    return int(text)


def read_ticket(stream):
    """The ticket on `stream` (stdin): one line, one trailing newline (or CR LF) ignored, as the
    binary reads a secret from stdin. ValueError, never quoting what was read, otherwise."""
    data = stream.read(MAX_TICKET + 3)
    if data.endswith(b"\n"):
        data = data[:-2] if data.endswith(b"\r\n") else data[:-1]
    if len(data) > MAX_TICKET:
        raise ValueError(f"the ticket on stdin is longer than {MAX_TICKET} bytes; nothing was sent")
    try:
        ticket = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ValueError("the ticket on stdin is not UTF-8; nothing was sent") from None
    if not ticket or "\n" in ticket:
        raise ValueError("redeem reads one ticket from stdin, one line (printf '%s\\n' \"$TICKET\" | client.py redeem); nothing was sent")
    return ticket


def main(argv):
    args = list(argv)
    path, timeout = None, DEFAULT_TIMEOUT
    while len(args) >= 2 and args[0] in ("--socket", "--timeout"):
        if args[0] == "--socket":
            path = args[1]
        else:
            try:
                timeout = parse_timeout(args[1])
            except ValueError as e:
                print(e, file=sys.stderr)
                return 2
        args = args[2:]
    usage = (
        (args[:1] == ["health"] and len(args) == 1)
        or (args[:1] == ["tasks"] and len(args) == 1)
        or (args[:1] == ["fetch"] and len(args) in (2, 3))
        or (args[:1] == ["redeem"] and len(args) == 1)
    )
    if args[:1] == ["redeem"] and len(args) > 1:
        # Not quoted: it is likely the ticket, already exposed to every user while we ran.
        print(
            "redeem takes no argument: it reads the ticket from stdin (printf '%s\\n' \"$TICKET\" | "
            "client.py redeem), never from the command line, where any user can read it "
            "(/proc/PID/cmdline) and redeem it first; nothing was sent. If that argument was a "
            "ticket, consider it exposed: ask for a new one",
            file=sys.stderr,
        )
        return 2
    if not usage:
        print(__doc__, file=sys.stderr)
        return 2
    ticket = None
    if args[0] == "redeem":
        try:
            ticket = read_ticket(sys.stdin.buffer)
        except (OSError, ValueError) as e:
            print(f"cannot read the ticket: {escape(e)}", file=sys.stderr)
            return 2
    try:
        with ScopevaultClient(path, timeout) as sv:
            if args[0] == "health":
                out = sv.health()
            elif args[0] == "tasks":
                out = sv.tasks()
            elif args[0] == "fetch":
                out = sv.fetch(args[1], args[2] if len(args) == 3 else None)
            else:
                out = sv.redeem(ticket)
    except ScopevaultError as e:
        print(f"scopevault refused: {escape(e)}", file=sys.stderr)
        return 5
    except (InvalidResponse, NoAnswer) as e:
        print(f"scopevault: {escape(e)}", file=sys.stderr)
        return 5
    except OSError as e:
        print(f"cannot talk to the scopevault daemon: {escape(e)}", file=sys.stderr)
        return 2
    # JSON with every character outside printable ASCII escaped (ensure_ascii): nothing the
    # daemon sent can reach the terminal raw.
    print(json.dumps(out, indent=2, ensure_ascii=True))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
