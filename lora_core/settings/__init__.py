"""Settings and the rules they are checked by, without torch: the choices, each task's and variant's facts,
the training-path rule, the budget, the config and the records a run returns."""
