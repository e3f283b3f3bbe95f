"""Placeholder: being written."""
def saliency_scores(*a, **k):  # placeholder
    raise NotImplementedError

