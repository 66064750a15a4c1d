"""What the dashboard's pages ask of the library, in plain Python (no streamlit here).

Finding checkpoints, choosing the default one, and turning a checkpoint's fields into the
plain words a clinician or a teacher reads on its card. Nothing here imports torch: the
sidebar lists checkpoints before any model is loaded, so reading a checkpoint's metadata
goes straight to the JSON header of its safetensors file.
"""
from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from metaviz.checkpoint_format import BUFFER_PREFIX, FORMAT, read_header
from metaviz.layer_names import layer_of

if TYPE_CHECKING:
    from metaviz.checkpoints import Checkpoint

REPOSITORY_ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_DIR_VARIABLE = "METAVIZ_CHECKPOINT_DIR"
DEFAULT_DATASET = "digits"  # works offline, so it is the checkpoint the dashboard opens first
DEFAULT_QUERIES = 5  # query images per class on screen: enough to read an accuracy from

# Short names fit the checkpoint card; the descriptions are its tooltips.
ALGORITHM_NAMES = {"maml": "MAML", "fomaml": "First-order MAML", "anil": "ANIL", "reptile": "Reptile",
                   "joint": "Joint pre-training", "imported": "Imported"}
ALGORITHM_DESCRIPTIONS = {
    "maml": "Model-Agnostic Meta-Learning (Finn et al., 2017), second-order: training looked for a "
            "starting point from which a few gradient steps on a new task's examples work well.",
    "fomaml": "First-order MAML: MAML with a cheaper approximation of its training gradient.",
    "anil": "Almost No Inner Loop: like MAML, but only the last layer adapts to a new task.",
    "reptile": "Reptile (Nichol et al., 2018): training took a few gradient steps on each task and moved the "
               "starting point part of the way towards where those steps ended, averaged over tasks.",
    "joint": "Not meta-learned: one model trained on the examples of all training tasks at once, then "
             "fine-tuned on a new task like the others (the MAML paper's baseline).",
    "imported": "Weights imported from a PyTorch or learn2learn file; metaviz did not train them.",
}
DATASET_NAMES = {"digits": "Digits", "omniglot": "Omniglot", "sinusoid": "Sine waves"}
DATASET_DESCRIPTIONS = {
    "digits": "Handwritten digits: scikit-learn's 8×8 digits enlarged to 28×28 (bundled, no download). "
              "Tasks draw from the digits 5 to 9, upright and turned by 90°.",
    "omniglot": "Omniglot: 1,623 handwritten characters from 50 alphabets, 20 drawings each.",
    "sinusoid": "Regression on sine waves of random amplitude and phase (the MAML paper's teaching example).",
}


def checkpoint_dir() -> Path:
    """$METAVIZ_CHECKPOINT_DIR if set, else the repository's checkpoints/ folder."""
    configured = os.environ.get(CHECKPOINT_DIR_VARIABLE)
    return Path(configured).expanduser() if configured else REPOSITORY_ROOT / "checkpoints"


@dataclass(frozen=True)
class CheckpointFile:
    path: Path
    metadata: dict | None  # None: not readable as a metaviz checkpoint (opening it says why)

    @property
    def name(self) -> str:
        return (self.metadata or {}).get("name") or self.path.stem

    @property
    def dataset(self) -> str | None:
        return (self.metadata or {}).get("dataset")

    @property
    def label(self) -> str:
        """What the sidebar lists (it is narrow: the name only)."""
        return self.name if self.metadata is not None else f"{self.path.name} (unreadable)"

    @property
    def summary(self) -> str:
        """What was it trained for, e.g. 'Digits, 5-way 1-shot'."""
        if self.metadata is None:
            return "not a metaviz checkpoint"
        dataset = DATASET_NAMES.get(self.dataset or "", self.dataset or "unknown data")
        return f"{dataset}, {task_shape(self.metadata.get('ways', 0), self.metadata.get('shots', 0))}"


def read_header_metadata(path: str | Path) -> dict | None:
    """A checkpoint's metaviz metadata from its safetensors header, without loading tensors."""
    header = read_header(path)
    return header[0] if header else None


@dataclass(frozen=True)
class CheckpointCard:
    """What the Checkpoint page shows about a checkpoint, read from its file header only, so the
    first page appears without importing torch. The same fields as metaviz.checkpoints.Checkpoint
    (which also checks that the weights fit the network) minus the tensors."""

    name: str
    algorithm: str
    dataset: str
    ways: int
    shots: int
    queries: int
    inner_lr: float
    inner_steps: int
    adapt_layers: tuple[str, ...] | None
    layers: tuple[str, ...]
    model_config: dict
    test_split: str
    history: dict
    metrics: dict
    created: str
    extra: dict
    path: str
    content_hash: str

    @property
    def is_regression(self) -> bool:
        return self.dataset == "sinusoid"


def read_card(path: str | Path, content_hash: str) -> CheckpointCard | None:
    """The card of a metaviz checkpoint file; None when its header lacks what the card needs
    (loading the file with metaviz.checkpoints then says what is wrong)."""
    header = read_header(path)
    if header is None:
        return None
    metadata, tensor_names = header
    try:
        layers = tuple(sorted({layer_of(name) for name in tensor_names if not name.startswith(BUFFER_PREFIX)},
                             key=_layer_order))  # the header lists names alphabetically
        adapt_layers = metadata.get("adapt_layers")
        card = CheckpointCard(
            name=str(metadata["name"]), algorithm=str(metadata["algorithm"]), dataset=str(metadata["dataset"]),
            ways=int(metadata["ways"]), shots=int(metadata["shots"]), queries=int(metadata["queries"]),
            inner_lr=float(metadata["inner_lr"]), inner_steps=int(metadata["inner_steps"]),
            adapt_layers=tuple(adapt_layers) if adapt_layers is not None else None, layers=layers,
            model_config=dict(metadata["model_config"]), test_split=str(metadata.get("test_split", "test")),
            history=dict(metadata.get("history") or {}), metrics=dict(metadata.get("metrics") or {}),
            created=str(metadata.get("created", "")), extra=dict(metadata.get("extra") or {}),
            path=str(path), content_hash=content_hash,
        )
    except (KeyError, TypeError, ValueError):
        return None
    return card if metadata.get("format") == FORMAT else None


def find_checkpoints(directory: Path | None = None) -> list[CheckpointFile]:
    """The `.safetensors` files in the checkpoint folder, sorted by file name."""
    directory = Path(directory) if directory is not None else checkpoint_dir()
    if not directory.is_dir():
        return []
    paths = sorted(path for path in directory.glob("*.safetensors") if path.is_file())
    return [CheckpointFile(path, read_header_metadata(path)) for path in paths]


class CheckpointFolderError(ValueError):
    """A folder the user named cannot give checkpoints; the message says why, in plain words."""


def checkpoints_in_folder(folder: str) -> list[CheckpointFile]:
    """The checkpoints in a folder the user named on the server (`~` allowed); a plain
    CheckpointFolderError when it is missing, not a folder, unreadable or holds none."""
    directory = Path(folder.strip()).expanduser()
    try:
        if not directory.exists():
            raise CheckpointFolderError(f"There is no folder {directory} on the server.")
        if not directory.is_dir():
            raise CheckpointFolderError(f"{directory} is a file, not a folder.")
        files = find_checkpoints(directory)
    except OSError as error:  # no permission, a broken mount, a name too long
        raise CheckpointFolderError(f"The folder {directory} cannot be read ({error.strerror or error}).") from None
    if not files:
        raise CheckpointFolderError(f"The folder {directory} holds no checkpoints (.safetensors files).")
    return files


def default_checkpoint(files: list[CheckpointFile]) -> CheckpointFile | None:
    """The first digits checkpoint (it needs no download), else the first readable, else the first."""
    for wanted in (lambda f: f.dataset == DEFAULT_DATASET, lambda f: f.metadata is not None, lambda f: True):
        for file in files:
            if wanted(file):
                return file
    return None


def file_sha256(path: str | Path) -> str:
    """The same digest as Checkpoint.content_hash: the cache key for everything derived."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- plain words for the checkpoint card ------------------------------------------------------


def task_shape(ways: int, shots: int) -> str:
    if not ways:  # regression checkpoints have no classes
        return f"{shots}-shot regression"
    return f"{ways}-way {shots}-shot"


def task_shape_explained(ways: int, shots: int) -> str:
    if not ways:
        return f"Each task gives the model {plural(shots, 'point')} of a new curve; it must then predict the rest."
    return (
        f"Each task shows the model {plural(shots, 'labelled example')} of each of {ways} classes it has never "
        "seen; it then has to recognise new images of those classes."
    )


def training_tasks_text(ways: int, shots: int, queries: int, extra: dict | None = None) -> str:
    """The full task shape it was meta-trained on, queries included, and the examples per class
    of the earlier run it continued where those differed (`extra`: the checkpoint's)."""
    if not ways:
        return f"{plural(shots, 'given point')} and {plural(queries, 'point')} to predict per curve"
    text = f"{ways} classes, each with {plural(shots, 'labelled example')} and {plural(queries, 'query image')}"
    earlier = (extra or {}).get("continued_from", {})
    if _changed_shots(extra or {}) and _is_number(earlier.get("iterations")):
        text += (f"; its first {int(earlier['iterations']):,} iterations had "
                 f"{plural(int(earlier['shots']), 'labelled example')} per class")
    return text


def _layer_order(layer: str) -> tuple[bool, str, int]:
    """conv1 < conv2 < ... < conv10 < head: the order data flows through the model."""
    match = re.fullmatch(r"([a-z]+)(\d*)", layer)
    prefix, number = (match.group(1), int(match.group(2) or 0)) if match else (layer, 0)
    return layer == "head", prefix, number


def network_text(model_config: dict) -> str:
    """'4 convolution blocks of 64 filters' / 'fully connected, hidden layers 256-128-64-64': the
    network a checkpoint rebuilds, in words."""
    normalised = {"layer": ", each image normalised on its own", "batch_running": ", batch norm (stored statistics)"}
    norm = normalised.get(model_config.get("norm", "none"), "")
    if model_config.get("kind", "conv") == "conv":
        return f"{model_config.get('blocks', 4)} convolution blocks of {model_config.get('hidden', 64)} filters{norm}"
    sizes = "-".join(str(size) for size in model_config.get("hidden_sizes", ()))
    return f"fully connected, hidden layers {sizes}{norm}"


def adapted_layers_text(checkpoint: Checkpoint | CheckpointCard) -> str:
    layers = sorted(checkpoint.layers, key=_layer_order)
    if checkpoint.adapt_layers is None or set(checkpoint.adapt_layers) >= set(layers):
        return f"all layers ({', '.join(layers)})"
    return ", ".join(sorted(checkpoint.adapt_layers, key=_layer_order)) + " only"


def plural(count: int, noun: str, plural_noun: str | None = None) -> str:
    """plural(1, "step") == "1 step"; plural(3, "step") == "3 steps"."""
    return f"{count} {noun if count == 1 else plural_noun or noun + 's'}"


def inner_loop_text(checkpoint: Checkpoint | CheckpointCard) -> str:
    return f"{plural(checkpoint.inner_steps, 'gradient step')}, learning rate {checkpoint.inner_lr:g}"


def meta_test_text(metrics: dict) -> tuple[str, str] | None:
    """("97.1% ± 0.4%", "95% confidence interval over 600 test tasks ...") or None if absent."""
    result = metrics.get("meta_test") if metrics else None
    if not isinstance(result, dict) or "mean" not in result:
        return None
    mean, ci95 = result.get("mean"), result.get("ci95")
    if result.get("metric", "accuracy") == "accuracy":
        value = f"{100 * mean:.1f}%" + (f" ± {100 * ci95:.1f}%" if _is_number(ci95) else "")
    else:
        value = f"MSE {mean:.3g}" + (f" ± {ci95:.2g}" if _is_number(ci95) else "")
    details = []
    if result.get("tasks"):
        details.append(f"averaged over {result['tasks']} tasks the model never trained on")
    if result.get("steps") is not None:
        details.append(f"after {result['steps']} adaptation steps")
    if _is_number(ci95):
        details.append("± is the 95% confidence interval")
    return value, "; ".join(details).capitalize() + ("." if details else "")


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and value == value  # NaN != NaN


def validation_joined_at(extra: dict) -> int | None:
    """The iteration from which a run (`--train-classes train+val`) trained on the validation
    classes too: 0 for a whole run, where its earlier phase ended for a last fit; None when
    the validation classes were always held out."""
    if extra.get("train_config", {}).get("train_classes") != "train+val":
        return None
    earlier = extra.get("continued_from", {}).get("iterations")
    return int(earlier) if _is_number(earlier) else 0


def _changed_shots(extra: dict) -> int | None:
    """The examples per class of a run that continued an earlier checkpoint trained with other
    ones (a 5-shot phase from a 1-shot model); None when they stayed the same or are unknown."""
    before = extra.get("continued_from", {}).get("shots")
    after = extra.get("train_config", {}).get("shots")
    return int(after) if _is_number(before) and _is_number(after) and before != after else None


def phase_change(extra: dict) -> tuple[int, str] | None:
    """Where a run that continued an earlier checkpoint trained on something else, and what
    ('then trained on 5-shot tasks'), for a line on its training curves; None when nothing changed."""
    earlier = extra.get("continued_from", {}).get("iterations")
    if not _is_number(earlier):
        return None
    changes = [f"{shots}-shot tasks"] if (shots := _changed_shots(extra)) else []
    if validation_joined_at(extra):
        changes.append("the validation classes too")
    return (int(earlier), "then trained on " + " and ".join(changes)) if changes else None


def training_curves_caption(extra: dict) -> str:
    """What the Checkpoint page says under the training curves, and where nothing was held out."""
    caption = "Accuracy on new tasks is measured after the model has adapted to each task's few examples."
    if joined_at := validation_joined_at(extra):
        caption += (f" From iteration {joined_at:,} on, the validation classes were trained on too (a last fit "
                    "with the settings already chosen), so nothing was held out to validate on.")
    return caption


def training_progress_text(extra: dict) -> str:
    """Says plainly when a checkpoint was exported before its meta-training finished."""
    done = extra.get("iterations_done")
    planned = extra.get("train_config", {}).get("iterations")
    if not done or not planned:
        return "not recorded (imported model)" if "imported_from" in extra else "not recorded"
    if done < planned:
        return f"unfinished: {done:,} of {planned:,} iterations (a snapshot of a run still in progress)"
    earlier = extra.get("continued_from", {}).get("iterations")
    decay = extra.get("train_config", {}).get("meta_lr_decay") == "linear"
    if _is_number(earlier):
        other_shots = f" on {shots}-shot tasks" if (shots := _changed_shots(extra)) else ""
        joined = " on the training and validation classes together" if validation_joined_at(extra) else ""
        last = f"; over the last {done:,} the meta-learning rate fell linearly to 0" if decay else ""
        return (f"complete ({earlier + done:,} iterations: {earlier:,}, then {done:,} more continuing from them"
                f"{other_shots}{joined}{last})")
    return f"complete ({done:,} iterations{'; the meta-learning rate fell linearly to 0' if decay else ''})"


def created_text(created: str) -> str:
    """'2026-11-25T14:17:58+00:00' as '25 Nov 2026, 14:17 UTC'; anything else as it is."""
    try:
        moment = datetime.fromisoformat(created)
    except (TypeError, ValueError):
        return created or "unknown"
    if moment.tzinfo is None:
        return moment.strftime("%d %b %Y, %H:%M").lstrip("0")
    return moment.astimezone(timezone.utc).strftime("%d %b %Y, %H:%M UTC").lstrip("0")


def short_hash(content_hash: str) -> str:
    return content_hash[:12] if content_hash else "unknown"


def has_training_history(history: dict) -> bool:
    return bool(history) and bool(history.get("iteration")) and bool(history.get("meta_loss"))


def train_command(directory: Path) -> str:
    """The command that trains the default checkpoint into `directory`."""
    out = directory / "digits-5w1s-maml.safetensors"
    try:
        out = out.relative_to(Path.cwd())
    except ValueError:
        pass
    return f"python -m metaviz train --dataset digits --run-dir runs/digits --out {out}"


_MARKDOWN_SPECIAL = set("\\`*_{}[]()#+-.!|<>~$:&\"'=^")


def markdown_text(text: str) -> str:
    """User text (an uploaded file's or class's name) made safe for st.markdown, st.error and
    the like: every markdown, HTML and Streamlit directive character is backslash-escaped, and
    line breaks become spaces, so it shows as typed and never as a link, image or markup."""
    return "".join("\\" + character if character in _MARKDOWN_SPECIAL else character
                   for character in " ".join(str(text).splitlines()))


# --- restricting a sampled task to some alphabets or classes ----------------------------------

GROUP_NOUNS = {"omniglot": ("alphabet", "alphabets"), "digits": ("digit", "digits")}
# What to type in the Task embeddings page's search box: names that match tasks of the dataset.
SEARCH_EXAMPLES = {"omniglot": "e.g. Gurmukhi or character05", "digits": "e.g. digit 7"}


def group_noun(dataset: str, count: int = 2) -> str:
    """What the dataset calls a group of classes: 'alphabets' for Omniglot, 'digits' for digits."""
    singular, plural_noun = GROUP_NOUNS.get(dataset, ("group", "groups"))
    return singular if count == 1 else plural_noun


def _names(names: Sequence[str]) -> str:
    """Names as markdown-safe text ('Alphabet_of_the_Magi' as 'Alphabet of the Magi'): a link's
    names are anybody's text."""
    return ", ".join(markdown_text(name.replace("_", " ")) for name in names)


def task_choice_problem(dataset: str, class_names: Sequence[str], class_groups: Sequence[str], ways: int,
                        groups: Sequence[str] = (), classes: Sequence[str] = ()) -> str | None:
    """Why these chosen groups or exact classes cannot give a `ways`-way task from a split
    whose classes are `class_names` (in `class_groups`), as markdown; None when they can.
    Chosen classes win over chosen groups, as in metaviz.tasks.sample_task."""
    if classes:
        unknown = [name for name in classes if name not in set(class_names)]
        if unknown:
            return f"These classes are not in this model's test data: {_names(unknown)}. Choose others."
        if len(set(classes)) != len(classes):
            return "A class is chosen twice; every class of a task must be different."
        if len(classes) != ways:
            return (f"This model tells apart exactly {ways} classes, and "
                    f"{plural(len(classes), 'class is', 'classes are')} chosen. Choose {ways}, "
                    "or clear the choice to draw them at random.")
        return None
    if groups:
        nouns = group_noun(dataset)
        unknown = [group for group in groups if group not in set(class_groups)]
        if unknown:
            return f"These {nouns} are not in this model's test data: {_names(unknown)}. Choose others."
        available = sum(group in set(groups) for group in class_groups)
        if available < ways:
            return (f"The chosen {group_noun(dataset, len(groups))} ({_names(groups)}) "
                    f"{'holds' if len(groups) == 1 else 'hold'} {plural(available, 'class', 'classes')}; "
                    f"this model needs {ways}. Choose more {nouns}.")
    return None


def layer_label(layer: str) -> str:
    """'conv2' -> 'conv2 (convolution 2)', 'head' -> 'head (output layer)': names a picker can show."""
    match = re.fullmatch(r"(conv|fc)(\d+)", layer)
    if layer == "head":
        return "head (output layer)"
    if match:
        return f"{layer} ({'convolution' if match.group(1) == 'conv' else 'hidden layer'} {match.group(2)})"
    return layer
