"""Training settings: one dataclass, from which the command line's flags derive.

Each field is declared once, here: its type, default and the docstring under it, which is
also the help of its flag (`training.pipeline.options`); a field's metadata says where the
flag differs from the field's name (`--lr`, `--whole-frame`) or that it has none."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Literal

from model_core.store.manifest import Localisation
from training.pipeline.options import NO_FLAG, flag

# The data set's usual place, beside the repository (not the working directory).
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data" / "blood-cells"
# TrainConfig fields that hold paths (strings in a manifest's training record).
PATH_KEYS = ("data_dir", "store_dir", "backup_dir", "temperature_from", "init_from")

# The data set's background (its glass): the median over the 279 train originals of each
# one's `model_core.inputs.colour.background_colour` (5th-95th percentiles 197-205, 198-207,
# 194-204: one camera). Never measured on the test originals. The 320x240 TRAIN copies the
# models learn from are brighter and spread wider (median 211, 213, 208; 5th-95th 200-223):
# v7 white-balanced to that scored lower on v7's held-out originals (unchanged 0.775
# against 0.793, mean over the 8 colour shifts 0.712 against 0.744), so this one stays.
TRAIN_BACKGROUND_RGB = (201.0, 203.0, 198.0)

# A tight crop of one cell (150-250 px of a 640x480 original) against the cell window at the
# data set's scale (224 px of the original): about 67% of its side up to all of it.
TIGHT_CROP_SIDES = (0.6, 1.0)
TIGHT_CROP_OFFSET = 0.1

Source = Literal["originals", "train-folder"]
Arch = Literal["tutorial", "wide"]  # the keys of training.pipeline.model.ARCHITECTURES
Strategy = Literal["default", "mirrored", "one-device", "multi-worker"]
FoldMethod = Literal["stratified-group-kfold", "round-robin"]


@dataclass
class AugmentConfig:
    """Random geometry and colour applied to every training sample."""

    rotation_degrees: float = field(default=20.0, metadata=flag(name="--rotation"))
    """Max rotation in degrees."""
    shift_fraction: float = field(default=0.1, metadata=flag(name="--shift"))
    """Max shift as a fraction of width and height."""
    zoom_fraction: float = field(default=0.0, metadata=flag(name="--zoom"))
    """Max zoom in or out as a fraction."""
    shear: float = 0.2
    """Max shear angle in radians (Keras 2.0's `shear_range`, which made the data set's
    copies with 0.2)."""
    flips: bool = True
    """Random horizontal and vertical flips."""
    color_jitter: float = 0.0
    """Max relative change of brightness, contrast and saturation (v4-v6 trained with 0.1;
    the recipe without it won round 6 on validation)."""
    hue_shift: float = 0.0
    """Max stain hue shift in OpenCV's 0-180 hue units (issue 26: stain batches and
    protocols move the hue by up to about 10)."""
    saturation_jitter: float = 0.0
    """Max relative change of the HSV saturation (stain strength): x[1 - s, 1 + s]."""
    value_jitter: float = 0.0
    """Max relative change of the HSV value (brightness, exposure): x[1 - v, 1 + v]."""
    channel_gain: float = 0.0
    """Max relative gain of each RGB channel on its own (a camera's white balance)."""
    window_zoom: float = 0.0
    """Max zoom in or out of a cell window, as a fraction (black beyond its edges): the
    model tolerates a measured scale that is off by this much."""
    tight_crop_share: float = 0.0
    """Share of cell windows cut down to a tight crop of the cell, as cell analysers and
    annotation tools export them: black beyond a square of `TIGHT_CROP_SIDES` of the
    window's side about its centre (moved by up to `TIGHT_CROP_OFFSET` of the side), as
    serving's window is black beyond a crop's edges (issue 23)."""
    fill_value: float = field(default=0.0, metadata=NO_FLAG)
    """Pixels uncovered by the geometry are black, like the data set's own augmented copies
    in images/TRAIN and images/TEST (Keras' constant fill)."""

    def stains(self) -> bool:
        """Whether the stain and camera colour jitter is on."""
        return any((self.hue_shift, self.saturation_jitter, self.value_jitter, self.channel_gain))


# TrainConfig fields added since the first records -> the value older records imply.
LEGACY_DEFAULTS = {
    "arch": "tutorial",
    "localise": False,
    "bank_copies": 0,
    "holdout_seed": None,
    "flip_average": False,
    "folds": None,
    "fold": 0,
    "fold_method": "round-robin",
    "restore_best": True,
    "init_from": None,
}


def _square(side: int) -> tuple[int, int]:
    return (side, side)


def _side(size: tuple[int, int]) -> int:
    return size[0]


@dataclass
class TrainConfig:
    """Everything that decides a training run; recorded in the manifest."""

    data_dir: Path = DEFAULT_DATA_DIR
    """Data set root."""
    store_dir: Path = Path("model_store")
    """Model store root; `train` publishes the new version into it."""
    model_name: str = "wbc-squeezenet"
    """Model name in the store."""
    source: Source = "train-folder"
    """`train-folder`: fit on the data set's own augmented copies in images/TRAIN, holding
    out every copy of a share of the originals behind them (matched by
    `copy_originals.train_copy_groups`) for validation. `originals`: the train originals of
    splits.csv, augmented here (a bank of `bank_copies` per original), validating on
    held-out originals. images/TEST is never read by training."""
    input_size: tuple[int, int] = field(
        default=(96, 96), metadata=flag(type=int, to_config=_square, from_config=_side)
    )
    """Input height and width in pixels (the flag gives the side of a square)."""
    arch: Arch = "tutorial"
    """Network: `tutorial` (the tutorial's fire modules) or `wide` (1.5x widths)."""
    localise: bool = field(default=True, metadata=flag(off="--whole-frame"))
    """Classify the window around the white cell (model_core.inputs.localisation) instead of the
    whole frame, as v1-v3 did; the localiser's parameters go into the manifest's
    preprocessing."""
    window: int = Localisation.model_fields["window"].default
    """With `localise`: side of the square window cut around the cell, in pixels of a frame
    as wide as the localiser's working width (320), resized to `input_size`; the default is
    the manifest's (112)."""
    white_balance: bool = False
    """Balance every image by its background (the glass) to the data set's,
    `TRAIN_BACKGROUND_RGB`, before the cell is found: the manifest's
    `preprocessing.white_balance` (issue 26), which serving runs too."""
    flip_average: bool = True
    """Serve (and score) the mean of the window's and its mirror's answers: the manifest's
    `preprocessing.flip_average`. Chosen on validation in round 6 (+0.9 points, 3 seeds)."""
    bank_copies: int | None = None
    """With `localise`: augment each training frame's full frame this many times once per
    run, localise and crop each copy (besides the frame itself), and train on that bank of
    windows with random flips, 90-degree rotations and colour jitter. None: 16 for
    `originals`, 0 for `train-folder` (its frames are augmented copies already)."""
    epochs: int = 6
    """Training epochs."""
    init_from: Path | None = None
    """Fine-tune: start from the weights of this model-store entry (its folder) instead of
    fresh ones. Its classes and network must be this run's; hold out the same originals
    (`holdout_seed`) as it did, or validation scores what it was trained on."""
    batch_size: int = 64
    """Global batch size (split across replicas)."""
    samples_per_epoch: int = 1536
    """Augmented samples drawn per epoch with `source=originals` (classes balanced)."""
    initial_lr: float = field(default=1e-3, metadata=flag(name="--lr"))
    """Initial Adam learning rate, halved every `lr_drop_every` epochs."""
    lr_drop_every: int = 3
    """Step decay: lr = initial_lr * 0.5 ** floor((1 + epoch) / lr_drop_every)."""
    dropout: float = 0.0
    """Dropout rate before the dense layer (0: none, as the tutorial)."""
    label_smoothing: float = 0.0
    """Label smoothing of the cross-entropy loss."""
    validation_fraction: float = 0.1
    """Share of train originals held out for validation (stratified by class, every copy of
    a held-out original with it); 0 trains on all."""
    folds: int | None = field(default=None, metadata=NO_FLAG)
    """Hold out fold `fold` of this many grouped, class-stratified folds of the train
    originals instead of `validation_fraction` of them (`cross-validate` trains every fold)."""
    fold: int = field(default=0, metadata=NO_FLAG)
    """With `folds`: the fold held out."""
    fold_method: FoldMethod = field(
        default="stratified-group-kfold", metadata=flag(commands=("cross-validate",))
    )
    """With `folds`: how the train originals are dealt into folds. `stratified-group-kfold`:
    scikit-learn's StratifiedGroupKFold, shuffled by the hold-out seed, which balances each
    fold's share of every class's images; `round-robin`: each class's originals shuffled by
    that seed and dealt in turn (studies recorded before the other method existed)."""
    holdout_seed: int | None = 1337
    """Seeds which originals are held out, so runs with other seeds validate on the same
    originals and can be compared; None: `seed` (runs before this setting existed)."""
    temperature_from: Path | None = None
    """With `validation_fraction` 0 (a refit on every original, nothing held out): the
    model-store entry of the same recipe and seed trained with originals held out, whose
    fitted temperature the refit carries (`calibration.carried_temperature`)."""
    validation_copies: int = 8
    """With `originals`: augmented copies per held-out original, besides the original
    itself (`train-folder` validates on the data set's own copies)."""
    restore_best: bool = field(default=False, metadata=flag(on="--best-epoch", off="--last-epoch"))
    """End with the weights of the epoch with the lowest validation loss (when validating)
    instead of the last epoch's. Off by default: a few dozen held-out originals make the
    loss too noisy to pick an epoch by (v5's first run would have kept epoch 1 of 9)."""
    augment: bool = True
    """Augment the training samples as `augmentation` says."""
    augmentation: AugmentConfig = field(default_factory=AugmentConfig)
    limit_per_class: int | None = None
    """Use at most this many images per class (quick runs and tests)."""
    seed: int = 1337
    """Seeds weights, sampling and augmentation (and the hold-out where `holdout_seed` is
    None)."""
    strategy: Strategy = "default"
    """tf.distribute strategy; `multi-worker`: one process per machine, the cluster in
    TF_CONFIG, only the chief publishes (training/pipeline/distributed.py)."""
    cpu_replicas: int = 1
    """Split the CPU into this many logical devices (to exercise `mirrored` without GPUs)."""
    backup_dir: Path | None = None
    """BackupAndRestore folder: an interrupted run resumes from it. None: no backups (the
    command line always keeps one, in runs/<model-name>/backup unless given)."""
    evaluate: bool = True
    """Evaluate the published entry on TEST and TEST_SIMPLE."""

    @classmethod
    def from_record(cls, record: dict) -> TrainConfig:
        """The config a manifest's `training` record was made from (extra keys ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        for key in PATH_KEYS:
            if values.get(key) is not None:
                values[key] = Path(values[key])
        if "input_size" in values:
            values["input_size"] = tuple(values["input_size"])
        # Records written before these settings existed meant the behaviour of that time.
        for key, legacy in LEGACY_DEFAULTS.items():
            values.setdefault(key, legacy)
        if isinstance(values.get("augmentation"), dict):
            values["augmentation"] = AugmentConfig(**({"shear": 0.0} | values["augmentation"]))
        return cls(**values)

    def holds_out(self) -> bool:
        """Whether some train originals are held out for validation (not a refit on all)."""
        return self.folds is not None or self.validation_fraction > 0

    def frame_copies(self) -> int:
        """Augmented copies per training frame in the bank of cell windows."""
        if self.bank_copies is not None:
            return self.bank_copies
        return 16 if self.source == "originals" else 0

    def to_record(self) -> dict:
        record = asdict(self)
        for key in PATH_KEYS:
            record[key] = None if record[key] is None else str(record[key])
        record["input_size"] = list(self.input_size)
        return record
