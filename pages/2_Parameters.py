"""Parameters: what LoRA trains, (d+k)r against dk, for this model's layers and for real ones. No training."""

from types import SimpleNamespace

import streamlit as st

from lora_core.measure.analysis import adam_state_bytes, param_counts
from lora_core.settings.config import FIELDS, LABELS
from lora_core.tasks.registry import TASK_KINDS
from ui import figures, session
from ui.navigation import page
from ui.sidebar import config_error
from ui.text import SHAPES_MAX_CHARS, parse_shapes, plain

with page("Parameters"):
    st.title("Parameters")
    s = session.current().settings
    task = TASK_KINDS[s["task"]]
    settings = SimpleNamespace(**s)
    model = task.adapted_shapes(settings)  # the layers the Playground's adapter goes on
    st.markdown(r"A LoRA adapter on a $d \times k$ weight trains $A$ ($r \times d$) and $B$ ($k \times r$): "
                r"$(d + k)\,r$ parameters instead of $d k$. The model here is the Playground's: "
                + task.describe_model(settings)
                + f", adapters on {', '.join(model)}.")

    left, mid, right = st.columns([1, 2, 2])
    rank = left.number_input(LABELS["rank"], min_value=int(FIELDS["rank"].metadata["lo"]),
                             max_value=int(FIELDS["rank"].metadata["hi"]), value=s["rank"], step=1,
                             help="the rank used in the tables; the chart covers every rank")
    chosen = mid.multiselect("Real layer shapes", list(figures.EXAMPLE_SHAPES),
                             default=["LLaMA-7B attention projection", "GPT-3 175B attention projection"])
    typed = right.text_input("More shapes, d×k", placeholder="e.g. 1024x4096, 512x512", max_chars=SHAPES_MAX_CHARS,
                             help="input size × output size of a weight matrix; separate several with commas")
    extra, bad = parse_shapes(typed)
    if bad:
        st.warning("Not a shape, ignored: " + plain(", ".join(bad)) + " (write d×k with whole numbers ≥ 1)")

    shapes = {**model, **{k: figures.EXAMPLE_SHAPES[k] for k in chosen}, **extra}
    r_max = max(min(d, k) for d, k in shapes.values())
    st.plotly_chart(figures.params_figure(shapes, rank, r_max), key="params")

    dora = st.checkbox(LABELS["use_dora"], value=s["use_dora"], help="DoRA also trains a magnitude per output row of "
                       "each adapted weight: d_out more parameters per layer (the Playground's setting by default)")
    # The whole model, as the Playground counts it: adapters on the adapted layers, every weight (and bias) for full.
    counts = param_counts(task.layer_shapes(settings), rank, use_dora=dora, targets=tuple(model), biases=task.biases,
                          other=task.other_params(settings))
    st.subheader(f"This model at r = {rank}" + (" with DoRA" if dora else ""))
    cards = st.columns(5)
    cards[0].metric("DoRA parameters" if dora else "LoRA parameters", f"{counts.lora_trainable:,}", border=True)
    cards[1].metric("Full parameters", f"{counts.full_trainable:,}", border=True)
    cards[2].metric("Fraction trained", f"{counts.lora_trainable / counts.full_trainable:.2%}", border=True)
    adam = "Adam keeps two float32 moments per trainable parameter"
    cards[3].metric("Adam state, LoRA", figures.human_bytes(adam_state_bytes(counts.lora_trainable)),
                    border=True, help=adam)
    cards[4].metric("Adam state, full", figures.human_bytes(adam_state_bytes(counts.full_trainable)),
                    border=True, help=adam)
    if dora:
        st.caption("Of the adapter's parameters, " + " and ".join(
            f"{layer.magnitude:,} in {layer.name}'s magnitude vector" for layer in counts.layers if layer.magnitude)
            + ".")
    if task.biases:
        st.caption("Full fine-tuning also trains the biases: "
                   + ", ".join(f"{layer.bias:,} in {layer.name}" for layer in counts.layers) + ".")
    problem = config_error(rank=rank)
    if problem:
        st.warning("The Playground would refuse this: " + plain(problem, 300))

    st.subheader("Every layer")
    table = figures.shapes_table(shapes, rank)
    st.dataframe(table, hide_index=True, column_config={
        name: st.column_config.NumberColumn(format="localized") for name in table.select_dtypes("number")})
    st.caption("Break-even rank: above d k / (d + k) LoRA would train more parameters than the full matrix.")
