"""salguide: saliency-guided training plugins for PyTorch Lightning.

Plugin families (each a functional core, a thin callback or loss module, and a Hydra config group):

- ``salguide.weights``    weight-saliency masks (SalUn, ANT) and the masked-update guarantee
- ``salguide.unlearning`` machine-unlearning objectives, data splits and metrics
- ``salguide.kernels``    fused attention with key masks and a differentiable attention mass
"""

__version__ = "0.1.0"
