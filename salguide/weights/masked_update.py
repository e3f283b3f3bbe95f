"""Placeholder: being written."""
class MaskedUpdate:  # placeholder
    pass
def _unused2(*a, **k):  # placeholder
    raise NotImplementedError

def mask_gradients_(*a, **k):  # placeholder
    raise NotImplementedError

def mask_optimizer_state_(*a, **k):  # placeholder
    raise NotImplementedError

def restore_frozen_(*a, **k):  # placeholder
    raise NotImplementedError

def snapshot_frozen(*a, **k):  # placeholder
    raise NotImplementedError

