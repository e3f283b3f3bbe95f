"""Placeholder: being written."""
def ant_mask(*a, **k):  # placeholder
    raise NotImplementedError

def ant_scores(*a, **k):  # placeholder
    raise NotImplementedError

