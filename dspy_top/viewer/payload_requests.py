"""A call's payload (its prompt and response), asked of its process and handed to whoever shows it.

Mixed into `TopApp` (app.py). The inspect screen asks for the call it opens; the history's
rows on screen are asked for too, to be kept (shown_payloads.py: they open after their process
ended); and `/` with free words reads prompts and responses for its search (payload_search.py).
Answers come from the collector's thread as `PayloadArrived` messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dspy_top.model.payloads import PayloadAnswer
from dspy_top.viewer.messages import PayloadArrived
from dspy_top.viewer.screens import is_screen

if TYPE_CHECKING:
    from dspy_top.model import CallSummary


class PayloadRequests:
    """Asking for payloads, keeping the shown ones, and forwarding each answer to the inspect screen."""

    def _payload_from_thread(self, answer: PayloadAnswer) -> None:
        self.post_message(PayloadArrived(answer))

    def fetch_payload(self, call: CallSummary) -> None:
        cached = self.shown_payloads.get(call.key)
        if cached is not None:
            self.call_after_refresh(self._forward_answer, cached)
            return
        if self.collector is None:
            self.call_after_refresh(
                self._forward_answer,
                PayloadAnswer(call.process, call.id, None, "this viewer is not connected to the process"),
            )
            return
        self.collector.request_payload(call.process, call.id)

    def forget_payload(self, call: CallSummary) -> None:
        self.shown_payloads.forget(call.key)

    def keep_shown_payloads(self) -> None:
        """Ask the processes for the payloads of the calls on screen, to keep (shown_payloads.py)."""
        view = self.view
        if self.collector is None or self.fleet is None or view is None:
            return
        shown = view.shown_calls()
        if not shown:
            return
        with self.fleet.lock:
            kept_by = self.fleet.payloads_kept()
        for process, call_id in self.shown_payloads.wanted(shown, kept_by):
            self.collector.request_payload(process, call_id)

    def _search_step(self) -> None:
        if self.collector is not None and (self.call_query.words or self.search.active):
            self.search.step(self.fleet, self.call_query, self.focus_key, self.collector.request_payload)

    def on_payload_arrived(self, message: PayloadArrived) -> None:
        answer = message.answer
        if self.fleet is not None:
            with self.fleet.lock:  # its text joins what `/` searches, whoever asked for it
                self.fleet.payload_read(answer, searching=bool(self.call_query.words))
        if self.search.answered((answer.process, answer.call_id)) and self.call_query.words:
            self._search_step()
        self.shown_payloads.add(answer)  # kept, whoever asked: it opens after its process ended
        self._forward_answer(answer)

    def _forward_answer(self, answer: PayloadAnswer) -> None:
        # An answer can come as the app shuts down (a shown call's, asked for a moment before): no screen then.
        if self.screen_stack and is_screen(self.screen, "InspectScreen"):
            self.screen.show_answer(answer)

    def module_chains(self) -> dict[str, tuple[str, ...]]:
        """Each module path's chain of classes (`RAG > ChainOfThought > Predict`), for the inspect screen."""
        if self.fleet is None:
            return {}
        with self.fleet.lock:
            return self.fleet.module_chains()
