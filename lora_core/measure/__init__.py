"""Measuring a run: spectra, the floor, the sweep's analyses, and the memo of SVDs they share."""
