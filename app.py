"""Home: LoRA in five sentences, the article's story in four steps, and where training will run."""

import streamlit as st

from lora_core.measure.analysis import full_param_count, lora_param_count
from lora_core.training.devices import describe_device, pick_device
from ui.navigation import link, page

page("Home")
st.title("LoRA Explorer")
st.caption("Low-rank adaptation, live: after Rajan Ghimire's *LoRA (Low Rank Adaptation): A Deeper Dive*.")

d = k = 4096
r = 8
lora, full = lora_param_count(d, k, r), full_param_count(d, k)
st.markdown(rf"""
### LoRA in five sentences
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

st.markdown("### The article's story in four steps")
steps = st.columns(4)
story = [
    ("Playground", "1 · Pretrain", ("A two-layer linear model learns $y = x\\theta$ until its loss is "
     "near zero.")),
    ("Playground", "2 · Shift", ("The task changes to $\\theta + 1$: the base model's loss on the "
     "shifted data jumps by orders of magnitude.")),
    ("Parameters", "3 · Adapt cheaply", ("A rank-1 adapter trains $(d + k)\\,r$ parameters, a tiny "
     "fraction of $d k$, and the loss falls again.")),
    ("Spectrum", "4 · Merge", ("The shift is one direction, ΔW has rank r, and the merged model "
     "matches the adapter. Compare runs on the Runs page.")),
]
for column, (target, title, text) in zip(steps, story, strict=True):
    with column.container(border=True):
        st.markdown(f"**{title}**\n\n{text}")
        link(target, f"Open {target}", icon=":material/arrow_forward:")
link("Runs", "Runs: every run of this session, overlaid and downloadable")
st.markdown("**Beyond the article.** Does it hold for a real network on real data? Choose the task "
            "*handwritten digits* on the Playground: a small ReLU network learns scikit-learn's 8×8 digits, then "
            "meets rotated, mirrored, inverted, noisy or scrambled digits, or classes it never saw.")
link("Playground", "Playground with the digits", query_params={"preset": "digits"}, icon=":material/draw:")

st.markdown(f"**Training runs on:** `{describe_device(pick_device('auto'))}` "
            "(a GPU if this server has one, else Apple MPS, else the CPU).")
