"""``TrainConfig``: every training option, with its help (one ``alexnet train`` flag each), and the
default dataset root. The paper's recipe is the default; every other value is a named deviation."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from training.architecture import VARIANTS

if TYPE_CHECKING:
    from training.model import AlexNet


def default_data_root() -> str:
    """ALEXNET_DATA, else the shared Caltech-101 beside this checkout (../shared/datasets/caltech101)."""
    here = Path(__file__).resolve().parents[1]
    return os.environ.get("ALEXNET_DATA", str(here.parent / "shared" / "datasets" / "caltech101"))


@dataclass
class TrainConfig:
    data: str = field(default_factory=default_data_root, metadata={"help": "ImageFolder dataset root"})
    split: str = field(default="train30", metadata={"help": "training split file (splits/<split>.txt)"})
    val_fraction: float = field(default=0.1, metadata={"help": "share of each class held out to drive the lr schedule"})
    out: str = field(default="runs/alexnet", metadata={"help": "run folder: checkpoints, metrics log, curves"})
    variant: str = field(
        default="grouped", metadata={"help": f"one of {VARIANTS}; 'single' is a deviation (one tower)"}
    )
    width: float = field(
        default=1.0,
        metadata={
            "help": "deviation: multiply every layer's channels and the fc6/fc7 units by this (paper: 1); "
            "a cheaper network of the same shape, for smoke runs and tests"
        },
    )
    epochs: int = field(default=90, metadata={"help": "maximum number of epochs"})
    batch_size: int = field(default=128, metadata={"help": "global batch size (split over DDP ranks)"})
    lr: float = field(default=0.01, metadata={"help": "initial learning rate"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum"})
    weight_decay: float = field(default=5e-4, metadata={"help": "weight decay"})
    lr_schedule: str = field(
        default="plateau",
        metadata={
            "help": "'plateau' (the paper: lr /= 10 when the validation error stops improving) or 'cosine' "
            "(a deviation: lr follows a half cosine from --lr to 0 over --epochs, step by step)"
        },
    )
    lr_patience: int = field(default=5, metadata={"help": "epochs without a better validation error before lr /= 10"})
    max_lr_drops: int = field(default=3, metadata={"help": "stop after this many drops once the error stops improving"})
    warmup_epochs: float = field(
        default=0.0, metadata={"help": "deviation: ramp lr linearly from 0 over this many epochs (paper: 0)"}
    )
    clip_grad_norm: float = field(
        default=0.0, metadata={"help": "deviation: clip the global gradient norm to this (paper: 0, off)"}
    )
    init: str = field(default="paper", metadata={"help": "'paper' (N(0, 0.01), biases 1) or 'kaiming' (a deviation)"})
    input_scale: float = field(
        default=1.0,
        metadata={
            "help": "pixel values are multiplied by this before the mean is "
            "subtracted (paper: 1, raw 0..255; a deviation otherwise)"
        },
    )
    dropout: float = field(default=0.5, metadata={"help": "dropout on fc6 and fc7"})
    label_smoothing: float = field(
        default=0.0, metadata={"help": "deviation: cross-entropy label smoothing (paper: 0)"}
    )
    mean_kind: str = field(default="image", metadata={"help": "'image' (the paper) or 'channel' (a deviation)"})
    pca_std: float = field(default=0.1, metadata={"help": "std of the PCA colour-noise alphas; 0 turns it off"})
    resize: int = field(default=256, metadata={"help": "side of the square images crops are taken from"})
    crop: int = field(default=224, metadata={"help": "side of the training crops"})
    amp: str = field(
        default="auto", metadata={"help": "'auto' (bf16/fp16 on CUDA, off on CPU), 'bf16', 'fp16' or 'off'"}
    )
    channels_last: str = field(
        default="off",
        metadata={
            "help": "'on', 'off' or 'auto' (on for CUDA); NHWC measured slower for AlexNet on an H100"
            " (benchmarks/results/gpu_h100.md)"
        },
    )
    device: str = field(default="auto", metadata={"help": "'auto', 'cpu', 'cuda' or 'cuda:N'"})
    threads: int = field(default=0, metadata={"help": "CPU threads for torch (0: leave torch's default)"})
    seed: int = field(default=0, metadata={"help": "random seed"})
    max_steps_per_epoch: int = field(
        default=0, metadata={"help": "cap steps per epoch (0: full epochs); for smoke runs"}
    )
    cache: str = field(default=".cache/squares", metadata={"help": "folder for the decoded-image cache"})
    resume: bool = field(default=False, metadata={"help": "resume from <out>/last.pt when it exists"})
    classes: int = field(default=0, metadata={"help": "use only the first N classes (0: all); for small runs"})
    time_limit_minutes: float = field(
        default=0.0, metadata={"help": "stop after the epoch that passes this much training time (0: no limit)"}
    )

    def network(self, num_classes: int) -> AlexNet:
        """The AlexNet these settings train (variant, dropout, init, width), freshly initialised."""
        from training.model import build_alexnet  # torch: only when a network is wanted

        return build_alexnet(num_classes, self.variant, self.dropout, self.init, self.width)  # type: ignore[arg-type]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)
