"""The server thread's turn for the GIL (dspy_top/instrumentation/gil_handoff.py), with real threads.

A job thread that lets the GIL go briefly and often (DSPy's os.urandom for each uuid4) keeps a
waiting thread from the GIL for seconds; the server thread says when it wants the GIL back and
the job's thread, at the end of an LM call, lets it go until the server thread has it. The real
DSPy case (a cached job recording every call) is in test_recording_job.py."""

from __future__ import annotations

import math
import os
import threading
import time

from dspy_top.instrumentation import gil_handoff
from dspy_top.instrumentation.gil_handoff import Handoff


def busy_job(handoff: Handoff, stop: threading.Event, calls: list[int]) -> None:
    """A job's thread as DSPy's cached calls are: Python work, the GIL let go for a moment (a
    uuid4's os.urandom), and an LM call ended every 100 µs or so."""
    perf = time.perf_counter
    while not stop.is_set():
        end = perf() + 0.0001
        while perf() < end:  # Python work, the GIL held
            pass
        os.urandom(16)
        now = perf()
        if now >= handoff.due:
            handoff.give(now)
        calls[0] += 1


def test_the_server_thread_gets_the_gil_back_promptly_from_a_busy_job():
    handoff = Handoff()
    stop, calls = threading.Event(), [0]
    job = threading.Thread(target=busy_job, args=(handoff, stop, calls))
    job.start()
    try:
        time.sleep(0.05)
        started = time.perf_counter()
        for _ in range(20):  # twenty calls that let the GIL go, as a tick's select, zlib and writes do
            with handoff.released(0.0005):
                time.sleep(0.0005)
            handoff.back()
        took = time.perf_counter() - started
    finally:
        handoff.idle()
        stop.set()
        job.join(10)
    # Each came back within a few of the job's calls (without the handoff, 0.1 to 0.5 s each here).
    assert took < 0.5, took
    assert handoff.given >= 1 and calls[0] > 20


def test_a_job_thread_gives_nothing_while_the_server_wants_nothing():
    handoff = Handoff()
    assert handoff.due == math.inf
    handoff.give(time.perf_counter())  # the job checks `due` first; give itself checks again
    with handoff.released(60.0):  # a select with a minute to wait
        handoff.give(time.perf_counter())
    assert (handoff.given, handoff.missed) == (0, 0)


def test_a_server_thread_that_does_not_come_costs_the_job_less_and_less():
    handoff = Handoff()
    with handoff.released(0.0):  # it said it wants the GIL back now, and never takes it
        started = time.perf_counter()
        handoff.give(time.perf_counter())
        waited = time.perf_counter() - started
        assert handoff.missed == 1 and waited >= gil_handoff.GIVE_WAIT * 0.9
        handoff.give(time.perf_counter())  # within the back-off: no wait
        assert handoff.missed == 1
        time.sleep(gil_handoff.BACKOFF * 1.5)
        handoff.give(time.perf_counter())
        assert handoff.missed == 2
        time.sleep(gil_handoff.BACKOFF * 1.5)  # the back-off doubled
        handoff.give(time.perf_counter())
        assert handoff.missed == 2


def test_the_server_thread_ends_a_job_threads_wait_when_it_runs():
    handoff = Handoff()
    entered = threading.Event()

    def server() -> None:
        with handoff.released(0.0):
            entered.set()
            time.sleep(0.0002)
        # back to work: the job thread waiting in give goes on
        while not handoff.given:
            handoff.back()
            time.sleep(0)

    thread = threading.Thread(target=server)
    thread.start()
    entered.wait(5)
    handoff.give(time.perf_counter())
    thread.join(5)
    assert (handoff.given, handoff.missed) == (1, 0)


def test_without_a_gil_no_job_thread_ever_waits():
    handoff = Handoff()
    handoff.needed = lambda: False  # as on a free-threaded Python run without its GIL
    with handoff.released(0.0):
        assert handoff.due == math.inf
        handoff.give(time.perf_counter())
    assert (handoff.given, handoff.missed) == (0, 0)
