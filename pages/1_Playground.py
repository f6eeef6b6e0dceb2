"""Playground: set rank, α and the shift, train, and watch pretraining and fine-tuning live."""

from ui import playground_view
from ui.navigation import page

with page("Playground"):
    playground_view.show()
