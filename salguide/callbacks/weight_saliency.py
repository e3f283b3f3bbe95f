"""Placeholder: being written."""
from salguide._lightning import Callback


class WeightSaliencyCallback(Callback):
    pass
