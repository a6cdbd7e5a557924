"""Buying samples: the plan of requests, the budget, and the progress bar generation shows."""
