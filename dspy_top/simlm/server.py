"""SimLM: start, reconfigure, read and stop a simulated LM server in this process."""

import socket
import threading
from http.server import ThreadingHTTPServer

from dspy_top.simlm.config import SimConfig
from dspy_top.simlm.handler import SimHandler
from dspy_top.simlm.state import SimState


class _SimHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 drops connects when 16+ client threads open pools at once.
    request_queue_size = 256

    def __init__(self, address, state: SimState):
        self.state = state
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, SimHandler)

    def process_request(self, request, client_address):
        with self._connections_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request):
        with self._connections_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def close_connections(self):
        """Wake handler threads parked on idle keep-alive connections so they exit."""
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class SimLM:
    """An OpenAI-compatible simulated LM on 127.0.0.1; see the package docstring for its behaviour.

    >>> with SimLM(latency_scale=0.0) as sim:
    ...     lm = dspy.LM("openai/gpt-4o-mini", api_base=sim.base_url, api_key="sim")
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        latency_scale: float = 1.0,
        error_every: int | None = None,
        error_rate: float = 0.0,
        error_seed: int = 0,
        error_status: int = 503,
        cached_fraction: float = 0.0,
    ):
        self.host = host
        self._requested_port = port
        self._state = SimState(
            SimConfig(
                latency_scale=latency_scale,
                error_every=error_every,
                error_rate=error_rate,
                error_seed=error_seed,
                error_status=error_status,
                cached_fraction=cached_fraction,
            )
        )
        self._server: _SimHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> "SimLM":
        if self._server is not None:
            return self
        self._server = _SimHTTPServer((self.host, self._requested_port), self._state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="simlm-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self):
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "SimLM":
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    # -- addresses ------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("SimLM is not started")
        return self._server.server_address[1]

    @property
    def root_url(self) -> str:
        """Where /_sim/stats and /_sim/config live, e.g. http://127.0.0.1:PORT."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI base URL to hand DSPy as api_base, e.g. http://127.0.0.1:PORT/v1."""
        return f"{self.root_url}/v1"

    # -- truth and knobs ------------------------------------------------------------

    @property
    def config(self) -> SimConfig:
        return self._state.config

    def configure(self, **changes) -> SimConfig:
        """Change latency_scale, error_every, error_rate, ... while serving."""
        return self._state.configure(changes)

    def stats(self) -> dict:
        """The server's own ledger, the same dict GET /_sim/stats returns."""
        return self._state.ledger.snapshot()

    def reset(self):
        """Zero the ledger and restart error_every's count (as POST /_sim/reset)."""
        self._state.reset()
