"""A Streamlit client without a browser: it speaks the app's websocket protocol (protobuf BackMsg/ForwardMsg), so
a load test can be many sessions without many renderers on the server's cores, as in a workshop, where the
browsers run on the participants' laptops.

`PageSession.open` loads a page as the frontend would; `press(label)` clicks a button and reads the script run it
starts to its end, keeping every message's bytes so that a test can look for text in what the page drew;
`refresh()` reruns the page's self-refreshing fragments (`st.fragment(run_every=...)`) as the frontend's timer does.
"""

from __future__ import annotations

import asyncio
import time

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState


class PageSession:
    """One Streamlit session on one page, opened with `query` (the URL's query string, without "?")."""

    def __init__(self, ws, page: str, query: str):
        self.ws, self.page, self.query = ws, page, query
        self.buttons: dict[str, str] = {}  # label -> widget id, from the last script run
        self.drawn: list[bytes] = []  # every message of the last script run, serialized
        self.auto_reruns: dict[str, float] = {}  # fragment id -> its refresh interval (s), as the server asked

    @classmethod
    async def open(cls, base_url: str, page: str, query: str = "") -> PageSession:
        ws = await websockets.connect(base_url.replace("http", "ws", 1) + "/_stcore/stream",
                                      subprotocols=["streamlit"], max_size=None, open_timeout=30)
        session = cls(ws, page, query)
        await session._rerun([])
        return session

    async def press(self, label: str, timeout: float = 300.0) -> float:
        """Click the button `label` and wait for the script run to finish; the seconds it took."""
        start = time.perf_counter()
        await self._rerun([WidgetState(id=self.buttons[label], trigger_value=True)], timeout)
        return time.perf_counter() - start

    async def refresh(self, timeout: float = 60.0) -> float:
        """Rerun each self-refreshing fragment once, as the frontend does every interval; the seconds it took."""
        start = time.perf_counter()
        for fragment_id in list(self.auto_reruns):
            await self._rerun([], timeout, fragment_id=fragment_id)
        return time.perf_counter() - start

    def shows(self, text: str) -> bool:
        """Whether the last script run drew `text` (in any element)."""
        needle = text.encode()
        return any(needle in raw for raw in self.drawn)

    async def close(self) -> None:
        await self.ws.close()

    async def _rerun(self, widgets: list[WidgetState], timeout: float = 60.0, fragment_id: str = "") -> None:
        msg = BackMsg()
        msg.rerun_script.query_string = self.query
        msg.rerun_script.page_name = self.page
        msg.rerun_script.widget_states.widgets.extend(widgets)
        if fragment_id:
            msg.rerun_script.fragment_id = fragment_id
            msg.rerun_script.is_auto_rerun = True
        await self.ws.send(msg.SerializeToString())
        self.drawn, deadline = [], time.monotonic() + timeout
        while time.monotonic() < deadline:
            raw = await asyncio.wait_for(self.ws.recv(), max(deadline - time.monotonic(), 0.01))
            forward = ForwardMsg()
            forward.ParseFromString(raw)
            self.drawn.append(raw)
            kind = forward.WhichOneof("type")
            if kind == "auto_rerun":
                self.auto_reruns[forward.auto_rerun.fragment_id] = forward.auto_rerun.interval
            if kind == "delta" and forward.delta.WhichOneof("type") == "new_element":
                element = forward.delta.new_element
                if element.WhichOneof("type") == "button":
                    self.buttons[element.button.label] = element.button.id
            if kind == "script_finished" and forward.script_finished != ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                return
        raise TimeoutError(f"the script run of {self.page}?{self.query} did not finish within {timeout:.0f} s")
