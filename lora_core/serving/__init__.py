"""Serving a room: the scheduler that admits runs by their budget and runs them fairly."""
