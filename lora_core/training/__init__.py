"""Training: the epoch loop and its optimizer, the hand-written fast paths (one run, a batch of runs), the
trainers' table, devices."""
