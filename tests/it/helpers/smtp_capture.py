"""A real SMTP server for relive's alert tests (aiosmtpd).

Every accepted message is written to DIR as NNN.eml (the bytes as
received) and NNN.json (envelope sender and recipients). Prints `ready PORT`
once it listens; stops when its standard input closes.

  smtp_capture.py --dir DIR [--port 0] [--cert C --key K [--implicit-tls]] [--user U --password P]
"""
import argparse
import asyncio
import json
import os
import ssl
import sys
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


class Capture:
    def __init__(self, directory):
        self.directory = directory
        self.count = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.count += 1
            n = self.count
        base = os.path.join(self.directory, "%03d" % n)
        with open(base + ".json.tmp", "w") as f:
            json.dump({"mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}, f)
        with open(base + ".eml.tmp", "wb") as f:
            f.write(envelope.original_content)
        os.rename(base + ".json.tmp", base + ".json")
        os.rename(base + ".eml.tmp", base + ".eml")
        return "250 OK message %d queued" % n


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--dir", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--implicit-tls", action="store_true")
    a = p.parse_args()
    kwargs = {}
    implicit = None
    if a.cert:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(a.cert, a.key)
        if a.implicit_tls:
            implicit = ctx
        else:
            kwargs.update(tls_context=ctx, require_starttls=True)
    if a.user:
        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == a.user
                and auth_data.password.decode() == a.password
            )
            return AuthResult(success=ok)

        kwargs.update(authenticator=authenticate, auth_required=True, auth_require_tls=bool(a.cert) and not a.implicit_tls)
    port = a.port
    if port == 0:
        import socket

        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
    controller = Controller(
        Capture(a.dir), hostname="127.0.0.1", port=port, ssl_context=implicit, **kwargs
    )
    controller.start()
    print("ready %d" % port, flush=True)
    try:
        sys.stdin.read()
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
