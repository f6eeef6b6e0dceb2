"""Singular values remembered by content: the same values as torch, computed once per distinct matrix."""

from __future__ import annotations

import torch

from lora_core.measure import svd_memo
from lora_core.settings.config import preset
from lora_core.sweep import run_sweep


def test_a_matrix_seen_before_is_not_decomposed_again_and_a_changed_one_is():
    svd_memo.forget()
    matrix = torch.randn(300, 280, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    before = dict(svd_memo.calls)
    first = svd_memo.svdvals(matrix)
    assert torch.equal(first, torch.linalg.svdvals(matrix))
    first.zero_()  # a caller changing its copy leaves the remembered values alone
    again = svd_memo.svdvals(matrix.clone())
    assert torch.equal(again, torch.linalg.svdvals(matrix))
    assert svd_memo.calls["computed"] - before["computed"] == 1
    assert svd_memo.calls["remembered"] - before["remembered"] == 1
    changed = matrix.clone()
    changed[17, 3] += 1e-12  # one bit of difference is another matrix
    svd_memo.svdvals(changed)
    assert svd_memo.calls["computed"] - before["computed"] == 2
    assert torch.equal(svd_memo.svdvals(matrix.T), torch.linalg.svdvals(matrix.T))  # a view, read contiguously


def test_a_sweeps_members_share_their_bases_decompositions():
    svd_memo.forget()
    config = preset("default", d_in=300, hidden=300, d_out=300, n_samples=256, n_eval=64, pretrain_epochs=1,
                    epochs=1, seed=31)
    before = dict(svd_memo.calls)
    result = run_sweep(config, ranks=(1, 2, 3), methods=("lora",))
    remembered = svd_memo.calls["remembered"] - before["remembered"]
    # each later member finds both layers' pretrained weights and the floor's end-to-end error remembered
    assert remembered >= 3 * (len(result.members) - 1)
    spectra = [run.spectra["layer1"].weight_before for run in result.members]
    assert spectra[0] == spectra[1] == spectra[2]
