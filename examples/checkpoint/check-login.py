#!/usr/bin/env python3
"""A synthetic-monitoring check that fetches its login from scopevault at runtime.

Run by the checkpoint's scheduler as the runner user (e.g. `checkpoint`), either directly
(it talks to the socket with the standard-library client) or under `scopevault exec`:

    scopevault exec --task=checkout-flow -- python3 check-login.py

Under exec the credentials arrive as SCOPEVAULT_SHOP_BUYER_USERNAME / _PASSWORD and any
accidental print of the password is masked in the check's output.
"""
import os
import sys
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "clients"))
from client import InvalidResponse, NoAnswer, ScopevaultClient, ScopevaultError, escape  # noqa: E402  (std-lib only)

TASK = "checkout-flow"
URL = os.environ.get("CHECK_URL", "https://shop.example.com/login")


def credentials():
    user = os.environ.get("SCOPEVAULT_SHOP_BUYER_USERNAME")
    password = os.environ.get("SCOPEVAULT_SHOP_BUYER_PASSWORD")
    if password and not user:
        sys.exit(
            f"check {TASK}: no username was handed over: set it with "
            "`scopevault cred set shop-buyer --field username=NAME`"
        )
    if user and password:
        return user, password  # handed over by `scopevault exec`
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
    return user, password


def main():
    user, password = credentials()
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
