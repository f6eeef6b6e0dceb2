"""Runs: every run of this session in a table, their loss curves overlaid, downloads as CSV and JSON."""

import streamlit as st

from ui import figures, session
from ui.navigation import need_run, page

with page("Runs"):
    st.title("Runs")
    runs = session.current().runs
    if not runs:
        need_run("a table of runs")
        st.stop()

    table = figures.runs_table(runs)
    st.dataframe(table, hide_index=True)
    st.download_button("Download the table (CSV)", table.to_csv(index=False), file_name="lora-explorer-runs.csv",
                       mime="text/csv")

    labels = list(runs)
    picked = st.multiselect("Runs to compare", labels, default=labels[-3:])
    if picked:
        st.plotly_chart(figures.overlay_figure({label: runs[label] for label in picked}), key="overlay")

    left, right = st.columns([3, 1], vertical_alignment="bottom")
    chosen = left.selectbox("Run to download", labels, index=len(labels) - 1)
    right.download_button("Download its result (JSON)", runs[chosen].to_json(indent=2),
                          file_name=f"lora-explorer-run-{labels.index(chosen) + 1}.json", mime="application/json")
