#!/usr/bin/env python3
"""Test helper: the listening end of an OCI --console-socket.

Usage: console-receiver.py SOCKET OUTFILE
Prints "listening" once the socket accepts, receives one pty master (SCM_RIGHTS), copies
everything the container writes to it into OUTFILE until the pty hangs up, then exits.
"""
import os
import socket
import sys

path, outfile = sys.argv[1], sys.argv[2]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
srv.listen(1)
print("listening", flush=True)
conn, _ = srv.accept()
_, fds, _, _ = socket.recv_fds(conn, 1024, 1)
master = fds[0]
with open(outfile, "wb") as out:
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # EIO: the slave side is closed everywhere
            break
        if not chunk:
            break
        out.write(chunk)
        out.flush()
