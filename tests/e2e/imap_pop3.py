#!/usr/bin/env python3
"""IMAP and POP3 sessions against Dovecot for the end-to-end test, with Python's imaplib and
poplib (what a brute-force script would use):

  imap_pop3.py IMAP_PORT POP3_PORT

Makes, in order, and prints one line per session ("imap|pop3 HOST USER attempts ok|failed"):
  - IMAP from 127.0.0.1: three wrong passwords for "admin" in one connection;
  - IMAP from ::1: an unknown user;
  - POP3 from 127.0.0.1: a wrong password for "info@e2e.test";
  - POP3 from ::1: two wrong passwords for "sales", one connection each;
  - IMAP from ::1: alice@e2e.test with her password (a successful login after failures from
    that address).
Dovecot summarises each failed connection in one line (`auth failed, N attempts`).
"""
import imaplib
import poplib
import sys


def imap(host, port, user, passwords):
    c = imaplib.IMAP4(host, port, timeout=30)
    ok = False
    for p in passwords:
        try:
            c.login(user, p)
            ok = True
            break
        except imaplib.IMAP4.error:
            pass
    try:
        c.logout()
    except Exception:
        c.shutdown()
    print(f"imap {host} {user} {len(passwords)} {'ok' if ok else 'failed'}")


def pop3(host, port, user, password):
    c = poplib.POP3(host, port, timeout=30)
    ok = False
    try:
        c.user(user)
        c.pass_(password)
        ok = True
    except poplib.error_proto:
        pass
    try:
        c.quit()
    except Exception:
        c.close()
    print(f"pop3 {host} {user} 1 {'ok' if ok else 'failed'}")


def main():
    imap_port, pop3_port = int(sys.argv[1]), int(sys.argv[2])
    imap("127.0.0.1", imap_port, "admin", ["123456", "password", "admin"])
    imap("::1", imap_port, "nosuchuser", ["x"])
    pop3("127.0.0.1", pop3_port, "info@e2e.test", "wrong")
    pop3("::1", pop3_port, "sales", "wrong1")
    pop3("::1", pop3_port, "sales", "wrong2")
    imap("::1", imap_port, "alice@e2e.test", ["correct-horse"])


if __name__ == "__main__":
    main()
