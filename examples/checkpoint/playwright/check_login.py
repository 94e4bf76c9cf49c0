#!/usr/bin/env python3
"""A Playwright login check against the local shop (shop.py), credentials from scopevault.

Run it under `scopevault exec --artifacts DIR` (see README.md): exec hands over the login as
SCOPEVAULT_<CREDENTIAL>_USERNAME / _PASSWORD, masks the check's output, and scrubs every
artefact under DIR when the check ends. The check records what real checks keep:

- DIR/login.har      the HAR, bodies embedded (form POST, cookies, Basic header, JSON)
- DIR/trace.zip      a Playwright trace with DOM snapshots, no screenshots
- DIR/login.png      a screenshot with the password field masked at capture time
- DIR/console.log    the page's console

Chromium is Debian's (/usr/bin/chromium, or $CHROMIUM): Playwright downloads no browser.
"""
import os
import pathlib
import sys

from playwright.sync_api import sync_playwright

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from shop import Shop  # noqa: E402


def env_name(credential, field):
    clean = lambda s: "".join(c.upper() if c.isalnum() else "_" for c in s)  # noqa: E731
    return "SCOPEVAULT_%s_%s" % (clean(credential), clean(field))


def main():
    credential = os.environ.get("CHECK_CREDENTIAL", "shop-buyer")
    username = os.environ[env_name(credential, "username")]
    password = os.environ[env_name(credential, "password")]
    out = pathlib.Path(os.environ.get("CHECK_ARTIFACTS", "artifacts"))
    out.mkdir(parents=True, exist_ok=True)
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    args = ["--no-sandbox"] if os.geteuid() == 0 else []

    with Shop(username, password) as shop, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args, headless=True)
        context = browser.new_context(
            record_har_path=str(out / "login.har"),
            record_har_content="embed",
            http_credentials={"username": username, "password": password},
        )
        # Snapshots but no screenshots: a trace's screencast frames cannot be scrubbed.
        context.tracing.start(screenshots=False, snapshots=True, sources=False)
        page = context.new_page()
        console = open(out / "console.log", "w")
        page.on("console", lambda m: console.write("%s: %s\n" % (m.type, m.text)))

        page.goto(shop.url + "/")
        page.fill("#username", username)
        page.fill("#password", password)
        # Mask what must never be in pixels: nothing can scrub an image afterwards.
        page.screenshot(path=str(out / "login.png"), mask=[page.locator("#password")])
        page.click("#submit")
        page.wait_for_selector("#welcome")
        # A marker that the session is signed in, never the shop's echo of the login: what
        # the check reads from the page is logged in the trace (`locator resolved to <p
        # id="me">…`), cut short, and a cut-off password is no longer a form the scrub finds.
        page.wait_for_selector("#me:text-is('signed in'), #me:text-is('not signed in')")
        ok = page.inner_text("#welcome").startswith("Welcome") and page.inner_text("#me") == "signed in"
        print("login check: %s as %s" % ("ok" if ok else "FAILED", username))

        context.tracing.stop(path=str(out / "trace.zip"))
        context.close()
        browser.close()
        console.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
