"""HTTP routes of the simulated LM: OpenAI chat completions plus its /_sim control plane.

Every response carries Content-Length (streams too: the whole SSE body is built first,
then written frame by frame with the simulated pauses), so HTTP/1.1 keep-alive works
for every client.
"""

import json
import time
from http.server import BaseHTTPRequestHandler

from dspy_top.simlm import wire
from dspy_top.simlm.completion import complete
from dspy_top.simlm.draws import request_digest
from dspy_top.simlm.faults import RETRY_NOW_HEADERS, error_body
from dspy_top.simlm.latency import error_latency, plan_latency
from dspy_top.simlm.state import SimState

COMPLETION_PATHS = ("/v1/chat/completions", "/chat/completions")
MODELS_PATHS = ("/v1/models", "/models")


class _BadRequest(Exception):
    pass


def _client_error(message: str, code: str = "invalid_request") -> dict:
    return {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}


class SimHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive by default
    server_version = "dspy-top-simlm/1"
    # Small header and body writes would otherwise wait on delayed ACKs (~40 ms each).
    disable_nagle_algorithm = True
    # An idle keep-alive connection frees its thread after this long.
    timeout = 120

    @property
    def state(self) -> SimState:
        return self.server.state

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # A quiet server: the ledger, not a log, is the record.

    def handle(self):
        # A client that goes away resets its connections (a job killed while its keep-alive
        # connections sit idle, as quitting `dspy-top demo` does): the reset reaches this thread
        # in the middle of reading the next request. That connection is over, nothing to answer;
        # socketserver would print the traceback on the terminal.
        try:
            super().handle()
        except ConnectionError:
            self.close_connection = True

    # -- plumbing ---------------------------------------------------------------

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _read_json(self) -> dict:
        raw = self._read_body()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise _BadRequest(f"request body is not JSON: {exc}") from None
        if not isinstance(body, dict):
            raise _BadRequest("request body must be a JSON object")
        return body

    def _send_head(self, status: int, content_type: str, length: int, headers=()):
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(length))
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    def _send_json(self, status: int, payload: dict, headers=()):
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self._send_head(status, "application/json", len(data), headers)
        self.wfile.write(data)

    # -- routes -----------------------------------------------------------------

    def do_GET(self):
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/_sim/stats":
            self._send_json(200, self.state.ledger.snapshot())
        elif path == "/_sim/config":
            self._send_json(200, self.state.config.as_dict())
        elif path in MODELS_PATHS:
            self._send_json(200, wire.models_body(self.state.models()))
        elif path.startswith(tuple(p + "/" for p in MODELS_PATHS)):
            self._send_json(200, wire.model_body(path.rsplit("/", 1)[-1]))
        elif path in ("/", "/health", "/_sim/health"):
            self._send_json(200, {"ok": True, "service": "dspy-top simulated LM"})
        else:
            self._send_json(404, _client_error(f"no route GET {path}", "not_found"))

    def do_POST(self):
        path = self.path.split("?", 1)[0].rstrip("/")
        try:
            body = self._read_json()
        except _BadRequest as exc:
            if path in COMPLETION_PATHS:
                self.state.ledger.request_started("unknown", streaming=False)
                self.state.ledger.request_failed("unknown", 400)
                self.state.ledger.request_finished()
            self._send_json(400, _client_error(str(exc)))
            return
        if path in COMPLETION_PATHS:
            self._chat_completion(body)
        elif path == "/_sim/reset":
            self.state.reset()
            self._send_json(200, {"ok": True})
        elif path == "/_sim/config":
            try:
                config = self.state.configure(body)
            except (ValueError, TypeError) as exc:
                self._send_json(400, _client_error(str(exc)))
                return
            self._send_json(200, config.as_dict())
        else:
            self._send_json(404, _client_error(f"no route POST {path}", "not_found"))

    # -- the completion itself ----------------------------------------------------

    def _chat_completion(self, body: dict):
        model = str(body.get("model") or "sim-local")
        streaming = bool(body.get("stream"))
        self.state.ledger.request_started(model, streaming)
        in_flight = _InFlight(self.state.ledger)
        try:
            self._answer(body, model, streaming, in_flight)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug in the sim must reach the client, not die in a thread
            self.close_connection = True
            if not in_flight.answered:
                self.state.ledger.request_failed(model, 500)
                self._send_json(
                    500,
                    {
                        "error": {
                            "message": f"simulated LM bug: {exc!r}",
                            "type": "server_error",
                            "param": None,
                            "code": "sim_bug",
                        }
                    },
                )
        finally:
            in_flight.release()

    def _answer(self, body: dict, model: str, streaming: bool, in_flight: "_InFlight"):
        # Every outcome is recorded (and in_flight released) before its last bytes go out,
        # so a client holding its answer always finds it in /_sim/stats.
        config = self.state.config
        ledger = self.state.ledger
        if not isinstance(body.get("messages"), list) or not body["messages"]:
            ledger.request_failed(model, 400)
            in_flight.release(answered=True)
            self._send_json(400, _client_error("'messages' must be a non-empty list"))
            return
        if body.get("stream_options") is not None and not streaming:
            # As OpenAI does: a client that sends it on a plain request has a bug worth seeing.
            ledger.request_failed(model, 400)
            in_flight.release(answered=True)
            self._send_json(
                400, _client_error("The 'stream_options' parameter is only allowed when 'stream' is enabled.")
            )
            return
        digest = request_digest(body)
        if self.state.faults.should_fail(digest, config):
            time.sleep(error_latency(config.latency_scale))
            ledger.request_failed(model, config.error_status)
            in_flight.release(answered=True)
            self._send_json(config.error_status, error_body(config.error_status), RETRY_NOW_HEADERS)
            return

        completion = complete(body)
        billed = wire.usage(completion, config.cached_fraction)
        cached = billed.get("prompt_tokens_details", {}).get("cached_tokens", 0)
        pause = plan_latency(digest, completion.prompt_tokens, completion.completion_tokens, config.latency_scale)
        response_id = self.state.response_id(digest)
        created = int(time.time())
        if not streaming:
            time.sleep(pause.total)
            ledger.request_succeeded(model, completion.prompt_tokens, completion.completion_tokens, cached)
            in_flight.release(answered=True)
            self._send_json(200, wire.completion_body(completion, response_id, created, billed))
            return

        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        frames = wire.stream_chunks(completion, response_id, created, billed, include_usage)
        time.sleep(pause.first_token)
        ledger.request_succeeded(model, completion.prompt_tokens, completion.completion_tokens, cached)
        in_flight.answered = True
        self._send_head(200, "text/event-stream", sum(len(f) for f, _ in frames), (("Cache-Control", "no-cache"),))
        for number, (frame, share) in enumerate(frames):
            if share:
                time.sleep(pause.generation * share)
            if number == len(frames) - 1:
                in_flight.release()
            self.wfile.write(frame)


class _InFlight:
    """One request's slot in the in_flight gauge, released exactly once."""

    def __init__(self, ledger):
        self._ledger = ledger
        self._released = False
        self.answered = False  # a status line is out: an error can now only close the socket

    def release(self, answered: bool = False):
        self.answered = self.answered or answered
        if not self._released:
            self._released = True
            self._ledger.request_finished()
