"""Inspector: drop in any PEFT LoRA adapter and see its ranks and spectra (no base model needed)."""

import streamlit as st

from lora_core.inspector import MAX_BYTES, AdapterError, from_files
from ui.inspector_page import show
from ui.navigation import page
from ui.text import plain

with page("Inspector"):
    st.title("Inspector")
    st.markdown("Upload an adapter in Hugging Face PEFT's format: `adapter_model.safetensors` and, if you have it, "
                "`adapter_config.json` (or a .zip of both). For every module: its rank and scaling, the singular "
                "values of ΔW = s·B·A computed from the factors, how many directions it really uses, and what rank "
                "would keep 90 or 99 % of its change. Only safetensors is read (a .bin pickle could run code); the "
                f"limit is {MAX_BYTES / 2**20:,.0f} MiB; nothing is written to disk.")
    uploads = st.file_uploader("Adapter files", type=["safetensors", "json", "zip", "bin", "pt"],
                               accept_multiple_files=True, help="adapter_model.safetensors and adapter_config.json, "
                               "or a .zip holding them")
    if not uploads:
        st.info("No adapter yet: upload one above. `python -m lora_core --save-adapter DIR` writes one to try.")
        st.stop()
    try:
        with st.spinner("Reading the adapter…"):
            report = from_files({u.name: u.getvalue() for u in uploads})
    except AdapterError as e:
        st.error(f"This adapter cannot be read: {plain(str(e), 400)}")
        st.stop()
    show(report)
