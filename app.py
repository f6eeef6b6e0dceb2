"""Home: what the app is for in one screen, where to start (Lessons, Playground), and every page in one line."""

import streamlit as st

from lora_core.lessons import LESSONS
from lora_core.measure.analysis import full_param_count, lora_param_count
from lora_core.training.devices import describe_device, pick_device
from ui import live
from ui.navigation import PAGES, link, page

with page("Home"):
    st.title("LoRA Explorer")
    st.markdown("**See how Low-Rank Adaptation works by training it.** A small model learns a task, the task shifts, "
                "and LoRA fine-tunes it by training two thin matrices instead of every weight. Move the rank r and the "
                "scale α, and see the loss, the parameters it trains and the directions it learns, on your own CPU in "
                "seconds. After Rajan Ghimire's *LoRA (Low Rank Adaptation): A Deeper Dive*.")

    if note := live.prewarm_note():
        st.caption(note)
    start, free = st.columns(2)
    with start.container(border=True):
        st.markdown(f"**New to LoRA, or in a workshop? Start with a lesson.** {len(LESSONS)} questions, each one "
                    "screen: commit to a prediction, run it, and see what happened, in your run's numbers.")
        link("Lessons", "Start the lessons", icon=":material/arrow_forward:")
    with free.container(border=True):
        st.markdown("**Know what to ask?** The Playground has every setting, the article's experiment and a real "
                    "network on handwritten digits.")
        link("Playground", "Open the Playground", icon=":material/arrow_forward:")
        link("Playground", "Playground with the digits", query_params={"preset": "digits"}, icon=":material/draw:")

    st.markdown("**Every page**")
    for label, p in PAGES.items():
        if label not in ("Home",):
            left, right = st.columns([1, 4], vertical_alignment="center")
            with left:
                link(label, label)
            right.markdown(p.about)

    d = k = 4096
    r = 8
    lora, full = lora_param_count(d, k, r), full_param_count(d, k)
    with st.expander("LoRA in five sentences"):
        st.markdown(rf"""
    1. Fine-tuning changes a pretrained weight $W \in \mathbb{{R}}^{{k \times d}}$ by some $\Delta W$; LoRA keeps $W$
       frozen and learns only the change.
    2. It writes the change as a product of two thin matrices, $\Delta W = B A$ with $A \in \mathbb{{R}}^{{r \times d}}$
       and $B \in \mathbb{{R}}^{{k \times r}}$, so a layer computes $h = W x + \frac{{\alpha}}{{r}} B A x$.
    3. $B$ starts at zero, so $\Delta W = 0$ and training starts exactly from the pretrained model; $\alpha / r$
       scales the update.
    4. It trains $(d + k)\,r$ numbers instead of $d k$: for a ${d} \times {k}$ attention projection and $r = {r}$,
       {lora:,} instead of {full:,} ({lora / full:.2%}).
    5. After training, $\frac{{\alpha}}{{r}} B A$ is added into $W$ (merging): the merged model is as fast as the
       original and gives the adapter's outputs.
    """)

    st.caption(f"Training runs on: `{describe_device(pick_device('auto'))}` (a GPU if this server has one, else Apple "
               "MPS, else the CPU).")
