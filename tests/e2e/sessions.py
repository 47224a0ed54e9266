#!/usr/bin/env python3
"""SMTP sessions swaks cannot make, for the end-to-end test:

  sessions.py HOST PORT too-many-errors   AUTH PLAIN with wrong passwords until Postfix says
                                          "too many errors" and hangs up
  sessions.py HOST PORT drop              AUTH LOGIN, then hang up at the 334 challenge
  sessions.py HOST PORT cancel            AUTH LOGIN, then "*" (authentication aborted)

Each sends XCLIENT first when XCLIENT_ADDR is set in the environment. Prints the number of
"535" failures it provoked (the lines Postfix logs as "authentication failed").
"""
import base64
import os
import socket
import sys


def conv(host, port):
    s = socket.create_connection((host, int(port)), timeout=30)
    f = s.makefile("rwb")

    def reply():
        lines = []
        while True:
            line = f.readline().decode("utf-8", "replace")
            if not line:
                return lines
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return lines

    def send(cmd):
        f.write(cmd.encode() + b"\r\n")
        f.flush()
        return reply()

    reply()  # greeting
    send("EHLO e2e.test")
    addr = os.environ.get("XCLIENT_ADDR")
    if addr:
        r = send("XCLIENT ADDR=" + addr + " NAME=[UNAVAILABLE]")
        assert r and r[0].startswith("220"), r
        send("EHLO e2e.test")
    return s, f, send, reply


def main():
    host, port, what = sys.argv[1], sys.argv[2], sys.argv[3]
    s, f, send, reply = conv(host, port)
    failures = 0
    if what == "too-many-errors":
        for i in range(40):
            token = base64.b64encode(f"\0brute{i}\0wrong".encode()).decode()
            r = send("AUTH PLAIN " + token)
            if not r:
                break
            if r[0].startswith("535"):
                failures += 1
            if r[0].startswith("421"):
                break
    elif what == "drop":
        r = send("AUTH LOGIN")
        assert r[0].startswith("334"), r
    elif what == "cancel":
        r = send("AUTH LOGIN")
        assert r[0].startswith("334"), r
        r = send("*")
        assert r[0].startswith("501"), r
        send("QUIT")
    s.close()
    print(failures)


main()
