"""Compare: sweep ranks, α, methods and seeds in one click, against the best any adapter could do."""

from ui import compare_view
from ui.navigation import page

with page("Compare"):
    compare_view.show()
