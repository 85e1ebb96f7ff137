"""Run the embedded AWS emulator: moto in server mode with govdr's fixes installed.

``python -m govdr_emulator.server --port 4566`` serves every AWS API on
``http://localhost:PORT`` until interrupted. Clients point at it with
``AWS_ENDPOINT_URL=http://localhost:PORT`` (a host name, not 127.0.0.1, so S3 virtual-host
requests parse) and any dummy credentials.
"""

from __future__ import annotations

import argparse
import signal
import socket
import threading
import warnings

HOST = "localhost"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m govdr_emulator.server",
        description="Serve the embedded AWS emulator (moto) with govdr's CloudFormation fixes.",
    )
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")

    from moto.server import ThreadedMotoServer

    from govdr_emulator.fixes import install

    install()
    port = args.port or free_port()
    server = ThreadedMotoServer(ip_address=HOST, port=port, verbose=False)
    server.start()
    print(f"govdr emulator listening on http://{HOST}:{port}", flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
