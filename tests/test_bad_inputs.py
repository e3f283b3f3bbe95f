"""Bad inputs found by probing the public API: each gets a clear error that names the problem, where it
used to raise deep inside torch / diffusers, divide by zero, or return a silent wrong number."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from salguide import attention as A
from salguide import inputs as I
from salguide import metrics as M
from salguide.callbacks import RandomLabelCallback
from salguide.data import DigitsDataModule
from salguide.evaluation import ObjectMass
from salguide.models import ClassifierModule, mlp
from salguide.models.optim import cosine
from salguide.models.vit import VisionTransformer
from salguide.unlearning import accuracy


def _vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=8, patch_size=4, in_chans=1, num_classes=3, embed_dim=8, depth=2, num_heads=2)


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 3))


X, MASK = torch.randn(2, 1, 8, 8), (torch.rand(2, 8, 8) > 0.5).float()
Q = torch.randn(2, 2, 5, 4)  # [B, H, N, D]
LOADER = [(X, torch.tensor([0, 7]))]

CASES: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    # labels outside the model's classes (IndexError / device assert inside cross-entropy before)
    (
        "rrr_labels",
        lambda: I.RRRLoss()(_cnn(), X, torch.tensor([0, 7]), MASK),
        ValueError,
        r"labels must lie in \[0, 3\)",
    ),
    (
        "sgt_float_labels",
        lambda: I.SGTLoss(seed=0)(_cnn(), X, torch.tensor([0.0, 1.0]), None),
        ValueError,
        "must be an integer tensor",
    ),
    (
        "concentration_labels",
        lambda: A.ConcentrationLoss()(_vit(), X, torch.tensor([0, 7]), MASK),
        ValueError,
        r"labels must lie in \[0, 3\)",
    ),
    (
        "classifier_labels",
        lambda: ClassifierModule(mlp(64, num_classes=3), scheduler=None).training_step(
            (X.flatten(1), torch.tensor([0, 9])), 0
        ),
        ValueError,
        r"labels must lie in \[0, 3\)",
    ),
    ("accuracy_labels", lambda: accuracy(_cnn(), LOADER), ValueError, r"labels must lie in \[0, 3\)"),
    # empty batches (NaN loss or a reshape error before)
    (
        "rrr_empty",
        lambda: I.RRRLoss()(_cnn(), X[:0], torch.zeros(0, dtype=torch.long), MASK[:0]),
        ValueError,
        "batch is empty",
    ),
    ("vit_empty", lambda: _vit()(X[:0]), ValueError, "batch is empty"),
    ("vit_channels", lambda: _vit()(torch.randn(2, 3, 8, 8)), ValueError, r"expected images \[B, 1, 8, 8\]"),
    # metrics with nothing scored (0.0 before)
    ("deletion_no_update", lambda: M.DeletionAUC(4).compute(), ValueError, "no sample was scored"),
    ("energy_no_update", lambda: M.EnergyInMask().compute(), ValueError, "no sample was scored"),
    ("pointing_no_update", lambda: M.PointingGame().compute(), ValueError, "no sample was scored"),
    (
        "pointing_nan",
        lambda: M.pointing_game_hits(torch.full((2, 8, 8), float("nan")), torch.ones(2, 8, 8)),
        ValueError,
        "NaN or inf",
    ),
    ("blur_even", lambda: M.blur(X, 4), ValueError, "must be odd"),
    # sizes (ZeroDivisionError before)
    ("vit_patch_0", lambda: VisionTransformer(img_size=8, patch_size=0, in_chans=1), ValueError, "patch_size"),
    (
        "vit_heads_0",
        lambda: VisionTransformer(img_size=8, patch_size=4, in_chans=1, embed_dim=8, num_heads=0),
        ValueError,
        "num_heads",
    ),
    # silent truncation of integers
    ("digits_batch_float", lambda: DigitsDataModule(batch_size=2.5), ValueError, "batch_size must be an integer"),
    ("object_mass_layer", lambda: ObjectMass(layer=1.7), ValueError, "layer must be an integer"),
    ("random_labels_classes", lambda: RandomLabelCallback(num_classes=3.7), ValueError, "num_classes"),
    ("l1_alpha_negative", lambda: ClassifierModule(mlp(4), l1_alpha=-1.0), ValueError, "l1_alpha"),
    ("classifier_no_net", lambda: ClassifierModule(None), TypeError, "needs a torch.nn.Module"),  # type: ignore[arg-type]
    # attention targets and schedules (silently clamped or NaN before)
    ("concentration_width_0", lambda: A.ConcentrationLoss(width=0), ValueError, "width must be a finite number > 0"),
    (
        "concentration_sigma_nan",
        lambda: A.ConcentrationLoss(target="point", sigma=float("nan")),
        ValueError,
        "sigma must be a finite number > 0",
    ),
    (
        "boxes_width",
        lambda: A.gaussian_from_boxes(torch.tensor([[0.1, 0.1, 0.5, 0.5]]), (2, 2), -1),
        ValueError,
        "width must be a finite number > 0",
    ),
    (
        "points_sigma_nan",
        lambda: A.gaussian_from_points(torch.rand(1, 2), (2, 2), float("nan")),
        ValueError,
        "sigma must be finite",
    ),
    (
        "concentration_negative_target",
        lambda: A.concentration_loss(torch.rand(2, 2, 5), -torch.ones(2, 5)),
        ValueError,
        "finite weights >= 0",
    ),
    ("schedule_nan", lambda: A.Schedule(float("nan")), ValueError, "must be finite"),
    (
        "tome_metric_shape",
        lambda: A.bipartite_merge(torch.rand(1, 5, 3), torch.rand(1, 4, 3), 1),
        ValueError,
        "metric must have shape",
    ),
    (
        "drop_masked_shape",
        lambda: A.drop_masked(torch.rand(2, 5, 3), torch.ones(2, 4, dtype=torch.bool)),
        ValueError,
        "mask must be a bool tensor",
    ),
    # masks
    (
        "nan_mask",
        lambda: I.RRRLoss()(_cnn(), X, torch.tensor([0, 1]), MASK * float("nan")),
        ValueError,
        r"must lie in \[0, 1\]",
    ),
    ("invert_range", lambda: I.invert(torch.full((2, 8, 8), 3.0)), ValueError, r"must lie in \[0, 1\]"),
    ("mask_boxes_channels", lambda: A.mask_boxes(torch.ones(2, 3, 8, 8)), ValueError, r"\[B, 1, H, W\]"),  # channel 0
    # attention rows from the recorder's q / k / lse (silently mis-indexed or deep einsum errors before)
    ("cls_lse_shape", lambda: A.cls_attention(Q, Q, torch.zeros(2, 2, 4), scale=0.5), ValueError, "lse must be"),
    ("cls_keys_shape", lambda: A.cls_attention(Q, Q[:, :, :4], scale=0.5), ValueError, "same shape"),
    ("cls_key_mask", lambda: A.cls_attention(Q, Q, scale=0.5, key_mask=torch.ones(2, 5)), TypeError, "bool"),
    ("diversity_lse", lambda: A.diversity_loss(Q, Q, torch.zeros(2, 2), scale=0.5), ValueError, "lse must be"),
    ("grid_tokens_2d", lambda: I.tokens_to_grid(torch.ones(5, 4)), ValueError, r"\[B, N, D\]"),
    ("grid_prefix", lambda: I.tokens_to_grid(torch.ones(1, 5, 4), 9), ValueError, r"num_prefix_tokens must lie"),
    # deletion targets (a short target gave a short curve, silently)
    (
        "deletion_target_length",
        lambda: M.deletion_curve(_cnn(), X, MASK, torch.tensor([0])),
        ValueError,
        r"shape \[B=2\]",
    ),
    ("deletion_target_range", lambda: M.deletion_curve(_cnn(), X, MASK, torch.tensor([0, 7])), ValueError, "0..7"),
    (
        "deletion_batch_0",
        lambda: M.deletion_curve(_cnn(), X, MASK, torch.tensor([0, 1]), batch_size=0),
        ValueError,
        "batch",
    ),
    (
        "deletion_baseline",
        lambda: M.deletion_curve(_cnn(), X, MASK, torch.tensor([0, 1]), baseline=torch.zeros(3, 3)),
        ValueError,
        "does not broadcast",
    ),
    # cosine over no epochs (annealed over 1 epoch, then rose again, silently)
    ("cosine_0", lambda: cosine(torch.optim.SGD(_cnn().parameters(), lr=0.1), 0), ValueError, "max_epochs"),
]


@pytest.mark.parametrize(("call", "error", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_error(call, error, message) -> None:
    with pytest.raises(error, match=message):
        call()


def test_diffusion_sizes_and_conditions_are_checked() -> None:
    pytest.importorskip("diffusers")
    from salguide.diffusion import DiffusionModule, class_unet

    with pytest.raises(ValueError, match="sample_size=5 must be divisible by 2"):
        class_unet(3, sample_size=5, block_out_channels=(8, 8), norm_num_groups=4)
    with pytest.raises(ValueError, match="must be at least the head dim 8"):
        class_unet(3, sample_size=4, block_out_channels=(4, 4, 4), norm_num_groups=4)
    net = class_unet(3, sample_size=8, block_out_channels=(8,), norm_num_groups=4, attention=False)
    with pytest.raises(ValueError, match="beta_schedule must be one of"):
        DiffusionModule(net, beta_schedule="bogus")
    dm = DiffusionModule(net)
    with pytest.raises(ValueError, match="class ids must be integers"):
        dm.sample([0.7], steps=2)  # was class 0, silently
    with pytest.raises(ValueError, match="1-D tensor"):
        dm.sample([[0, 1]], steps=2)
    with pytest.raises(ValueError, match="at least one condition"):
        dm.sample([], steps=2)
    with pytest.raises(ValueError, match="outside the model's classes"):
        dm.validation_step((torch.randn(2, 1, 8, 8), torch.tensor([0, 7])), 0)
    with pytest.raises(ValueError, match="batch is empty"):
        dm.training_step((torch.randn(0, 1, 8, 8), torch.zeros(0, dtype=torch.long)), 0)
    assert dm.sample([0, 2], steps=2).shape == (2, 1, 8, 8)  # valid calls still work


def test_tied_weights_save_and_load(tmp_path) -> None:
    """One storage under two names (tied embeddings): safetensors refused to write it before."""
    from salguide.weights_io import load_weights, save_weights

    torch.manual_seed(0)
    src = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    src[1].weight = src[0].weight
    save_weights(src, tmp_path / "tied.safetensors")
    dst = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    dst[1].weight = dst[0].weight
    load_weights(dst, tmp_path / "tied.safetensors")
    for k, v in src.state_dict().items():
        assert torch.equal(dst.state_dict()[k], v), k
    assert dst[1].weight is dst[0].weight


@pytest.mark.parametrize("wrapped", [False, True], ids=["classifier_module", "user_module_with_rrr"])
def test_a_nan_training_loss_stops_before_the_weights_turn_nan(wrapped) -> None:
    """One NaN pixel used to train on silently until every weight was NaN."""
    from cpu_trainer import PlainModule, cpu_trainer
    from torch.utils.data import DataLoader, TensorDataset

    from salguide.callbacks import InputSaliencyCallback

    x = torch.randn(8, 1, 8, 8)
    x[3, 0, 2, 2] = float("nan")
    loader = DataLoader(TensorDataset(x, torch.arange(8) % 3, torch.ones(8, 1, 8, 8)), batch_size=4)
    module = (
        PlainModule(nn.Sequential(nn.Flatten(), nn.Linear(64, 3)))
        if wrapped
        else ClassifierModule(_cnn(), scheduler=None)
    )
    before = {k: v.clone() for k, v in module.state_dict().items()}
    callbacks = [InputSaliencyCallback(I.RRRLoss(1.0))] if wrapped else []
    where = "InputSaliencyCallback at step 0" if wrapped else "ClassifierModule at step 0"
    with pytest.raises(ValueError, match=f"{where}: the training loss is nan"):
        cpu_trainer(max_steps=2, callbacks=callbacks).fit(module, loader)
    for k, v in module.state_dict().items():
        assert torch.equal(v, before[k]), k  # the failing step never reached the optimiser


@pytest.mark.parametrize(
    ("loss", "mask", "message"),
    [
        (A.ConcentrationLoss(target="mask"), -MASK, r"must lie in \[0, 1\]"),  # gave a penalty of 0.0
        (A.BackgroundSuppressionLoss(), MASK * 255, r"must lie in \[0, 1\]"),  # clamped silently
        (A.ConcentrationLoss(), MASK[:, :4, :4], "pixel for pixel"),  # pooled silently
    ],
    ids=["negative", "0_255", "other_size"],
)
def test_attention_loss_masks_are_checked(loss, mask, message) -> None:
    with pytest.raises(ValueError, match=message):
        loss(A.route(_vit()), X, torch.tensor([0, 1]), mask)
