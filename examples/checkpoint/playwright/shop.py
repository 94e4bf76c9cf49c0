"""A tiny local shop for the Playwright login check: standard library only, loopback only.

GET  /          login form
POST /login     form-encoded username/password; sets a session cookie, redirects to /account
GET  /account   also asks for HTTP Basic credentials (401 + WWW-Authenticate), like a
                back-office behind a proxy
GET  /api/me    a "debug" JSON endpoint that echoes the login it saw (leaky, on purpose: real
                apps do this, and the artefacts then hold the password in JSON)
"""
import base64
import http.server
import json
import secrets
import threading
import urllib.parse

LOGIN_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>Shop login</title></head>
<body>
<h1>Shop</h1>
<form method="post" action="/login">
  <label>User <input id="username" name="username" autocomplete="off"></label>
  <label>Password <input id="password" name="password" type="password"></label>
  <button id="submit" type="submit">Log in</button>
</form>
</body></html>
"""


class Shop:
    """The shop accepts exactly one username/password (the ones the check was handed)."""

    def __init__(self, username, password):
        self.username = username
        self.password = password
        self.sessions = {}
        shop = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the check's output clean
                pass

            def send(self, code, body, ctype="text/html; charset=utf-8", headers=()):
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def session(self):
                for part in self.headers.get("Cookie", "").split(";"):
                    k, _, v = part.strip().partition("=")
                    if k == "session" and v in shop.sessions:
                        return shop.sessions[v]
                return None

            def do_GET(self):
                if self.path == "/":
                    return self.send(200, LOGIN_PAGE)
                login = self.session()
                if login is None:
                    return self.send(303, b"", headers=[("Location", "/")])
                if self.path == "/account":
                    want = base64.b64encode(
                        ("%s:%s" % (shop.username, shop.password)).encode()
                    ).decode()
                    if self.headers.get("Authorization", "") != "Basic " + want:
                        return self.send(
                            401, b"auth", headers=[("WWW-Authenticate", 'Basic realm="shop"')]
                        )
                    # The page asks the leaky endpoint (so the HAR and the trace's network log
                    # hold its JSON, for the scrub), but shows only a marker that the session
                    # is signed in, never the echo: text in the DOM is copied, cut short, into
                    # the trace's log of each locator that reads it, where no scrub of whole
                    # values finds it.
                    page = (
                        "<!doctype html><html><body><h1 id='welcome'>Welcome, %s</h1>"
                        "<p id='me'></p><script>fetch('/api/me').then(r => r.json())"
                        ".then(me => { document.getElementById('me').textContent = "
                        "me.username ? 'signed in' : 'not signed in'; "
                        "console.log('me loaded'); });</script></body></html>"
                    ) % login["username"]
                    return self.send(200, page.encode())
                if self.path == "/api/me":
                    return self.send(200, json.dumps(login).encode(), "application/json")
                return self.send(404, b"not found")

            def do_POST(self):
                if self.path != "/login":
                    return self.send(404, b"not found")
                n = int(self.headers.get("Content-Length", "0"))
                form = urllib.parse.parse_qs(self.rfile.read(n).decode(), keep_blank_values=True)
                user = form.get("username", [""])[0]
                pw = form.get("password", [""])[0]
                if user != shop.username or pw != shop.password:
                    return self.send(403, b"wrong login")
                token = secrets.token_hex(16)
                shop.sessions[token] = {"username": user, "password": pw}
                return self.send(
                    303,
                    b"",
                    headers=[("Location", "/account"), ("Set-Cookie", "session=%s; Path=/" % token)],
                )

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
