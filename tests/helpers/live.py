"""What the tests of a live instrumented process share: the simulated LM, a viewer on the socket,
litellm's price for the simulated model, and the programs they run.

Its fixtures (`sim`, `viewer`, `run`) are in tests/helpers/fixtures.py, which every test module sees.
"""

from __future__ import annotations

import os
import uuid

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"

import dspy  # noqa: E402
import litellm  # noqa: E402

MODEL = "openai/gpt-4o-mini"
PRICE_IN = litellm.model_cost["gpt-4o-mini"]["input_cost_per_token"]
PRICE_OUT = litellm.model_cost["gpt-4o-mini"]["output_cost_per_token"]


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
