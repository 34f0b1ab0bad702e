"""A fake dspy-top job another user plants (standard library only: it runs as `nobody`, with any python3).

Usage: python3 planted_server.py DIRECTORY FRAMES
Makes DIRECTORY (mode 0777) if it does not exist, serves `<its pid>.sock` in it (mode 0777, so
anyone may connect) and sends every viewer the frames in the file FRAMES (already encoded with
the real framing by the test), then holds the connection. Prints `READY <socket>`; ends when its
stdin closes.
"""

import os
import socket
import sys
import threading


def main() -> None:
    directory, frames = sys.argv[1], open(sys.argv[2], "rb").read()
    os.umask(0)
    os.makedirs(directory, mode=0o777, exist_ok=True)
    path = os.path.join(directory, f"{os.getpid()}.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    os.chmod(path, 0o777)
    listener.listen(8)
    held = []

    def serve() -> None:
        while True:
            conn, _ = listener.accept()
            conn.sendall(frames)
            held.append(conn)

    threading.Thread(target=serve, daemon=True).start()
    print("READY", path, flush=True)
    sys.stdin.read()


if __name__ == "__main__":
    main()
