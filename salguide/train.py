"""``salguide-train``: the Hydra entry point (also ``python -m salguide.train``).

Examples::

    salguide-train                                  # SalUn forgets digit 0, compared with Retrain
    salguide-train unlearning=ga unlearning.optimizer.lr=1e-3   # another method
    salguide-train experiment=unlearn_digits_random # forget a random 10 % instead
    salguide-train -m unlearning=ft,rl,salun seed=0,1,2
"""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

import salguide.configs  # noqa: F401  (registers the resolvers the configs use, before Hydra composes)
from salguide.pipelines import run_task


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> float | None:
    return run_task(cfg)


if __name__ == "__main__":
    main()
