"""What the Inspector page draws for a read adapter (Streamlit); tests call `show` on reports made from bytes,
since AppTest cannot upload files."""

from __future__ import annotations

import json

import streamlit as st

from lora_core.inspector import AdapterReport

from . import inspector_view as view
from .text import plain


def show(report: AdapterReport) -> None:
    total = sum(m.params for m in report.modules)
    cards = st.columns(3)
    cards[0].metric("Modules", f"{len(report.modules):,}", border=True)
    cards[1].metric("Adapter parameters", f"{total:,}", border=True)
    cards[2].metric("Ranks", ", ".join(str(r) for r in sorted({m.rank for m in report.modules})), border=True)
    for note in report.assumed:
        st.warning(plain(note, 300), icon="ℹ️")
    table = view.table(report)
    st.dataframe(table, hide_index=True, column_config={
        "share": st.column_config.NumberColumn("share of ‖ΔW‖²", format="percent"),
        "effective_rank": st.column_config.NumberColumn("effective rank", format="%.2f")})
    st.caption("rank_90% / rank_99%: the fewest directions of ΔW holding 90 / 99 % of its energy (Σσ²): a rank "
               "that small would have kept that much of this module's change. Effective rank: exp of the entropy "
               "of the normalised σ².")
    left, right = st.columns(2)
    left.plotly_chart(view.per_layer(report, "effective_rank"), key="effective-rank")
    right.plotly_chart(view.per_layer(report, "delta_norm"), key="delta-norm")
    names = [m.module for m in report.modules]
    biggest = sorted(report.modules, key=lambda m: -m.delta_norm)[:3]
    chosen = st.multiselect("Modules to show the spectra of", names, default=[m.module for m in biggest],
                            key="w_inspector_modules")
    st.plotly_chart(view.spectra(report, chosen), key="spectra")
    down = st.columns(2)
    down[0].download_button("Download the table (CSV)", table.to_csv(index=False), "adapter-modules.csv", "text/csv")
    down[1].download_button("Download the report (JSON)", json.dumps(report.to_dict(), indent=2),
                            "adapter-report.json", "application/json")
