"""Lessons: a question, your prediction, the runs, and what they show (lora_core/lessons.py)."""

import streamlit as st

from ui import lessons_view
from ui.navigation import page

with page("Lessons"):
    st.title("Lessons")
    st.markdown("Each lesson asks one question about LoRA. Commit to a prediction, press **Run** (a few fine-tunes, "
                "seconds on a laptop), then see what happened, written from your runs' numbers, and whether your "
                "prediction held. Every lesson links to the page where you can explore it further.")
    lessons_view.show(lessons_view.pick_lesson())
