"""What the tests of a live instrumented process share: the simulated LM, a viewer on the socket,
litellm's price for the simulated model, and the programs they run.

Import the fixtures into a test module (`from tests.helpers.live import run, sim, viewer`).
"""

from __future__ import annotations

import os
import sys
import uuid

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import dspy  # noqa: E402
import litellm  # noqa: E402
import pytest  # noqa: E402

import dspy_top  # noqa: E402
from dspy_top import client  # noqa: E402
from dspy_top.simlm import SimLM  # noqa: E402

from tests.helpers.reader import Reader  # noqa: E402

MODEL = "openai/gpt-4o-mini"
PRICE_IN = litellm.model_cost["gpt-4o-mini"]["input_cost_per_token"]
PRICE_OUT = litellm.model_cost["gpt-4o-mini"]["output_cost_per_token"]


@pytest.fixture(scope="module")
def sim():
    with SimLM(latency_scale=0.0) as server:
        yield server


@pytest.fixture(scope="module")
def viewer(tmp_path_factory):
    os.environ.setdefault("DSPY_TOP_RUNTIME_DIR", str(tmp_path_factory.mktemp("rt")))
    handle = dspy_top.instrument()
    with client.Connection(handle.socket_path) as connection:
        yield Reader(connection)


@pytest.fixture
def run(sim, viewer):
    """Resets the server's count and marks the stream; the test runs its program in between."""
    sim.reset()
    sim.configure(error_every=None, latency_scale=0.0)
    viewer.mark()
    yield viewer
    dspy.configure(lm=None, callbacks=[], track_usage=False, disable_history=False)
    # DSPy 2.6 keeps its settings overrides per thread, and concurrent asyncio tasks restore
    # each other's: after a gather of acall()s the main thread may be left overriding `lm`
    # with the old one (with or without dspy-top). Start the next test clean.
    local = getattr(sys.modules["dspy.dsp.utils.settings"], "thread_local_overrides", None)
    if hasattr(local, "overrides") and not hasattr(local, "reset"):
        local.overrides = type(local.overrides)()


def nonce():
    return uuid.uuid4().hex[:8]


class RAG(dspy.Module):
    def __init__(self):
        super().__init__()
        self.generate_query = dspy.ChainOfThought("question -> query")
        self.answer = dspy.Predict("question, query -> answer")

    def forward(self, question):
        query = self.generate_query(question=question).query
        return self.answer(question=question, query=query)

    async def aforward(self, question):
        query = (await self.generate_query.acall(question=question)).query
        return await self.answer.acall(question=question, query=query)

