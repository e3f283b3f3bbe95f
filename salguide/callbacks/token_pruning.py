"""Token pruning / merging during training and evaluation: ``TokenPruningCallback(EViTPolicy([3, 6, 9], 0.7))``.

At ``setup`` the policy is attached to the routed ViT inside the LightningModule; before every training
batch its keep rate follows the schedule (1.0 -> ``keep`` over ``warmup_steps``, EViT's warm-up);
validation / test / predict use the final keep rate (or 1.0 with ``apply_in_eval=False``). The policy is
detached at ``teardown`` and when the run raises (``on_exception``), restoring the previous policy. The
keep rate is saved in checkpoints.
"""

from __future__ import annotations

from typing import Any

from salguide._lightning import Callback
from salguide.attention.policies import TokenPolicy, use_policy
from salguide.attention.routing import find_routed
from salguide.attention.schedules import keep_schedule
from salguide.callbacks._strategy import refuse_sharded


class TokenPruningCallback(Callback):
    """Attach ``policy`` (EViT / DynamicViT masking / ToMe) with a keep-rate schedule."""

    def __init__(
        self, policy: TokenPolicy, warmup_steps: int = 0, schedule: str = "cosine", apply_in_eval: bool = True
    ) -> None:
        if not isinstance(policy, TokenPolicy):
            raise TypeError(f"policy must be a salguide.attention.TokenPolicy, got {type(policy).__name__}")
        self.policy, self.target = policy, policy.keep
        self.schedule = keep_schedule(policy.keep, warmup_steps, schedule)
        self.apply_in_eval = apply_in_eval
        self._model: Any = None
        self._previous: Any = None

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        refuse_sharded(
            self,
            trainer,
            "the policy drops or merges tokens inside the routed ViT's blocks; untested "
            "with sharded parameters (FSDP, DeepSpeed)",
        )
        self.teardown(trainer, pl_module, stage)  # never stack on our own policy
        self._model = find_routed(pl_module)
        self._previous = use_policy(self._model, self.policy)
        self.policy.set_keep(self.target if self.apply_in_eval else 1.0)

    def teardown(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self._model is not None:
            use_policy(self._model, self._previous)
            self._model = self._previous = None

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        self.teardown(trainer, pl_module, "exception")

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        self.policy.set_keep(self.schedule(trainer.global_step))
        pl_module.log(f"train/{self.policy.name}_keep", self.policy.keep, on_step=True, on_epoch=False)

    def _eval_start(self) -> None:
        self.policy.set_keep(self.target if self.apply_in_eval else 1.0)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        self._eval_start()

    def on_test_start(self, trainer: Any, pl_module: Any) -> None:
        self._eval_start()

    def on_predict_start(self, trainer: Any, pl_module: Any) -> None:
        self._eval_start()

    def state_dict(self) -> dict[str, Any]:
        return {"keep": self.policy.keep, "target": self.target, "policy": self.policy.name}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume the keep rate; a checkpoint of another policy or target keep rate is refused (training would
        follow this callback's schedule while evaluation used the checkpoint's rate)."""
        name = state.get("policy", self.policy.name)
        if name != self.policy.name or state["target"] != self.target:
            raise ValueError(
                f"the checkpoint was trained with {name} keeping {state['target']}, but this TokenPruningCallback "
                f"has {self.policy.name} keeping {self.target}: resume with the checkpoint's policy and keep rate"
            )
        self.policy.set_keep(state["keep"])
