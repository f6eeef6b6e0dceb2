"""Room: every run finished on this server, from every session, on one live board."""

import streamlit as st

from ui import room_view
from ui.navigation import page

with page("Room"):
    st.title("Room")
    st.markdown("Every run finished on this server, from every session (single runs, lesson runs and sweep members), "
                "on one chart that refreshes itself: the merged model's loss on the shifted data (accuracy for the "
                "digits) against the parameters it trained, one colour per method. Your own runs are ringed. Runs are "
                "anonymous unless you choose a nickname.")
    challenge = st.container()  # the challenge stands at the top; the live fragment below draws it
    room_view.nickname()
    task, lesson = room_view.filters()
    room_view.live_room(challenge, task, lesson)
    room_view.facilitator()
