#!/usr/bin/env python3
"""A scopevault client using only the Python standard library (docs/protocol.md).

    python3 client.py [--socket PATH] health
    python3 client.py [--socket PATH] tasks
    python3 client.py [--socket PATH] fetch TASK [CREDENTIAL]
    python3 client.py [--socket PATH] redeem TICKET

Prints the response as JSON. Exit status: 0 ok, 5 refused by the daemon, 2 usage or I/O.
Use it as a module too:

    from client import ScopevaultClient
    with ScopevaultClient() as sv:
        cred = sv.fetch("checkout-flow")["credentials"][0]
        login(cred["fields"]["username"], cred["secrets"]["password"])
"""
import json
import os
import socket
import stat
import struct
import sys

MAX_RESPONSE = 16 * 1024 * 1024


class ScopevaultError(Exception):
    """The daemon refused: `code` is the stable error code (docs/protocol.md)."""

    def __init__(self, code, message):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


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
    def __init__(self, path=None, timeout=30.0):
        path = path or default_socket()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        try:
            check_peer(self.sock, path)
        except Exception:
            self.sock.close()
            raise
        self.buf = b""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        self.sock.close()

    def call(self, op, **fields):
        request = {"v": 1, "op": op}
        request.update({k: v for k, v in fields.items() if v is not None})
        self.sock.sendall(json.dumps(request).encode("utf-8") + b"\n")
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the daemon closed the connection without an answer")
            self.buf += chunk
            if len(self.buf) > MAX_RESPONSE:
                raise ConnectionError("response too large")
        line, self.buf = self.buf.split(b"\n", 1)
        response = json.loads(line)
        if not response.get("ok"):
            err = response.get("error") or {}
            raise ScopevaultError(err.get("code", "internal"), err.get("message", ""))
        return response

    def health(self):
        return self.call("health")

    def tasks(self):
        return self.call("tasks")["tasks"]

    def fetch(self, task, credential=None):
        return self.call("fetch", task=task, credential=credential)

    def redeem(self, ticket, credential=None):
        return self.call("fetch", ticket=ticket, credential=credential)


def main(argv):
    args = list(argv)
    path = None
    if len(args) >= 2 and args[0] == "--socket":
        path, args = args[1], args[2:]
    if not args or args[0] not in ("health", "tasks", "fetch", "redeem"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        with ScopevaultClient(path) as sv:
            if args[0] == "health":
                out = sv.health()
            elif args[0] == "tasks":
                out = sv.tasks()
            elif args[0] == "fetch" and len(args) in (2, 3):
                out = sv.fetch(args[1], args[2] if len(args) == 3 else None)
            elif args[0] == "redeem" and len(args) == 2:
                out = sv.redeem(args[1])
            else:
                print(__doc__, file=sys.stderr)
                return 2
    except ScopevaultError as e:
        print(f"scopevault refused: {e}", file=sys.stderr)
        return 5
    except OSError as e:
        print(f"cannot talk to the scopevault daemon: {e}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
