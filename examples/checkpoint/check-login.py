#!/usr/bin/env python3
"""A synthetic-monitoring check that fetches its login from scopevault at runtime.

Run by the checkpoint's scheduler as the runner user (e.g. `checkpoint`), either directly
(it talks to the socket with the standard-library client) or under `scopevault exec`:

    scopevault exec --task=checkout-flow -- python3 check-login.py

Under exec the credentials arrive as SCOPEVAULT_SHOP_BUYER_USERNAME / _PASSWORD and any
accidental print of the password is masked in the check's output.

The password goes only to an https:// CHECK_URL (default https://shop.example.com/login)
and, when the check fetched the credential itself, only to one of the origins the credential
was issued for (its `origins` in the policy): any other URL is refused, exit 1, nothing sent.
Under exec the origins are not handed over, so only plain http is refused there.
"""
import os
import sys
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "clients"))
from client import InvalidResponse, NoAnswer, ScopevaultClient, ScopevaultError, escape  # noqa: E402  (std-lib only)

TASK = "checkout-flow"
URL = os.environ.get("CHECK_URL", "https://shop.example.com/login")


def origin_of(url):
    """`scheme://host[:port]` of `url`, lowercase, without a default port, as `scopevault lint`
    compares origins (docs/lint-rules.md, origin-mismatch). ValueError for a URL the check
    will not send a password to, saying why."""
    if any(c.isspace() or not c.isprintable() or c == "\\" for c in url):
        raise ValueError("it holds a space, a control character or a backslash")
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("https", "http") or not parts.hostname:
        raise ValueError("it is not an https:// URL with a host")
    if "@" in parts.netloc:
        raise ValueError("it has a user name or password before its host")
    port = parts.port  # ValueError for a port that is not a number from 0 to 65535
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"https": 443, "http": 80}[scheme]
    return f"{scheme}://{host}" + ("" if port in (None, default) else f":{port}")


def check_url(name, origins):
    """Exit 1, sending nothing, unless URL is an https:// URL at one of `origins` (any, when
    the credential declares none or the check was not given them)."""
    refused = f"check {TASK}: refusing to send the password of {escape(name)} to CHECK_URL {escape(URL)}"
    try:
        origin = origin_of(URL)
    except ValueError as e:
        sys.exit(f"{refused}: {escape(e)}; nothing was sent")
    if not origin.startswith("https://"):
        sys.exit(f"{refused}: plain http shows it to anyone on the way; give an https:// URL; nothing was sent")
    allowed = set()
    for o in origins or []:
        try:
            allowed.add(origin_of(o))
        except ValueError:
            pass
    if origins and origin not in allowed:
        sys.exit(
            f"{refused}: its origin {escape(origin)} is not among the origins the credential was issued "
            f"for ({escape(', '.join(origins))}), and the credential would be sent to a site it was not "
            "issued for (docs/lint-rules.md, origin-mismatch); point CHECK_URL at one of them, or add the "
            "origin to the credential's `origins` in the policy if it is really meant for it; nothing was sent"
        )


def credentials():
    """(name, username, password, origins): origins is None under exec (not handed over)."""
    user = os.environ.get("SCOPEVAULT_SHOP_BUYER_USERNAME")
    password = os.environ.get("SCOPEVAULT_SHOP_BUYER_PASSWORD")
    if password and not user:
        sys.exit(
            f"check {TASK}: no username was handed over: set it with "
            "`scopevault cred set shop-buyer --field username=NAME`"
        )
    if user and password:
        return "shop-buyer", user, password, None  # handed over by `scopevault exec`
    try:
        with ScopevaultClient() as sv:
            fetched = sv.fetch(TASK)
    except ScopevaultError as e:
        # Refused by the daemon (e.g. `denied`: this uid is not a runner of the task); the
        # attempt is in its audit log.
        sys.exit(f"check {TASK}: scopevault refused: {escape(e)}")
    except (InvalidResponse, NoAnswer) as e:
        # An answer that is not a valid response, or none within the client's timeout: the
        # check fails saying so, never with a traceback.
        sys.exit(f"check {TASK}: scopevault: {escape(e)}")
    except OSError as e:
        # Not connected at all: no daemon there, or a uid outside the socket's group
        # (`serve --socket-group`), which the daemon never sees, so nothing is audited.
        sys.exit(f"check {TASK}: cannot reach the scopevault daemon: {escape(e)}")
    creds = fetched.get("credentials")
    cred = creds[0] if isinstance(creds, list) and creds else None
    if not (
        isinstance(cred, dict)
        and isinstance(cred.get("fields"), dict)
        and isinstance(cred.get("secrets"), dict)
        and isinstance(cred.get("warnings", []), list)
        and isinstance(cred.get("origins"), list)
        and all(isinstance(o, str) for o in cred["origins"])
    ):
        sys.exit(f"check {TASK}: scopevault: the daemon's answer holds no credential the check can read")
    for warning in cred.get("warnings", []):
        print(f"scopevault warning: {escape(warning)}", file=sys.stderr)
    user = cred["fields"].get("username")
    password = cred["secrets"].get("password")
    user = user if isinstance(user, str) else None
    password = password if isinstance(password, str) else None
    if not user or not password:
        missing = "a username" if not user else "a password"
        sys.exit(
            f"check {TASK}: credential {escape(cred.get('name'))} has no {missing[2:]}: set it with "
            f"`scopevault cred set {escape(cred.get('name'))} --field username=NAME --secret password`"
        )
    return cred.get("name"), user, password, cred["origins"]


def main():
    name, user, password, origins = credentials()
    check_url(name, origins)
    if os.environ.get("CHECK_DRY_RUN"):
        print(f"check {TASK}: would sign in to {URL} as {escape(user)}")
        return 0
    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    try:
        with urllib.request.urlopen(URL, data=data, timeout=10) as resp:
            ok = resp.status == 200
    except OSError as e:
        print(f"check {TASK}: FAILED: {e}")
        return 1
    print(f"check {TASK}: {'OK' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
