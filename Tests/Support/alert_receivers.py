#!/usr/bin/env python3
"""Real alert receivers on loopback for fuseboxd's alert tests.

    alert_receivers.py --cert server.pem --key server.key --secret S --smtp-user U --smtp-password P

Starts, on 127.0.0.1 port 0:
  * an HTTPS server: POST /ok answers 200, /fail500 answers 500, /slow waits
    30 s before answering (a sink that times out), /retry-after answers 503
    with "Retry-After: 1"; every request is reported with its path, headers,
    JSON body and whether its X-Fusebox-Signature verifies (HMAC-SHA256 of
    "<X-Fusebox-Timestamp>.<body>" under the secret);
  * an SMTP server (aiosmtpd) that requires STARTTLS and AUTH LOGIN/PLAIN with
    the given user and password; every message is reported with its envelope,
    subject, body, whether it came over TLS and who logged in;
  * a port with nothing listening (for "connection refused").

Prints one line "READY https=<port> smtp=<port> refused=<port>", then one JSON
line per event received, flushed at once. Ends on SIGTERM.
"""
import argparse
import asyncio
import email
import email.policy
import hashlib
import hmac
import http.server
import json
import socket
import ssl
import sys
import threading
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

lock = threading.Lock()


def emit(event):
    with lock:
        sys.stdout.write(json.dumps(event, sort_keys=True) + "\n")
        sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cert", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--secret", required=True)
    parser.add_argument("--smtp-user", required=True)
    parser.add_argument("--smtp-password", required=True)
    args = parser.parse_args()
    secret = args.secret.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *a):
            pass

        def do_POST(self):
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            timestamp = self.headers.get("X-Fusebox-Timestamp", "")
            signature = self.headers.get("X-Fusebox-Signature", "")
            expected = "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            emit({
                "kind": "http", "path": self.path, "at": time.time(),
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": parsed, "raw": body.decode("utf-8", "replace"),
                "signature_valid": bool(signature) and hmac.compare_digest(signature, expected),
                "timestamp_skew": abs(time.time() - int(timestamp)) if timestamp.isdigit() else None,
            })
            status, headers = 200, {}
            if self.path == "/fail500":
                status = 500
            elif self.path == "/retry-after":
                status, headers = 503, {"Retry-After": "1"}
            elif self.path == "/slow":
                time.sleep(30)
            reply = b"ok"
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(args.cert, args.key)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()

    class Auth:
        def __call__(self, server, session, envelope, mechanism, auth_data):
            if isinstance(auth_data, LoginPassword) and auth_data.login.decode() == args.smtp_user \
                    and auth_data.password.decode() == args.smtp_password:
                return AuthResult(success=True, auth_data=auth_data.login.decode())
            return AuthResult(success=False, handled=False)

    class Mailbox:
        async def handle_DATA(self, server, session, envelope):
            message = email.message_from_bytes(envelope.content, policy=email.policy.default)
            emit({
                "kind": "smtp", "at": time.time(), "mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos,
                "subject": str(message["subject"]), "body": message.get_content(),
                "tls": session.ssl is not None, "user": session.auth_data if session.authenticated else None,
                "headers": {k.lower(): str(v) for k, v in message.items()},
            })
            return "250 OK"

    smtp_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    smtp_tls.load_cert_chain(args.cert, args.key)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    smtp_port = probe.getsockname()[1]
    probe.close()
    controller = Controller(
        Mailbox(), hostname="127.0.0.1", port=smtp_port, tls_context=smtp_tls, require_starttls=True,
        authenticator=Auth(), auth_required=True, auth_require_tls=True, ready_timeout=10)
    controller.start()

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    refused_port = closed.getsockname()[1]
    closed.close()

    emit({"kind": "ready", "https": httpd.server_address[1], "smtp": smtp_port, "refused": refused_port})
    sys.stdout.write("READY https=%d smtp=%d refused=%d\n" % (httpd.server_address[1], smtp_port, refused_port))
    sys.stdout.flush()
    # Until SIGTERM (its default action ends the process).
    threading.Event().wait()


if __name__ == "__main__":
    main()
