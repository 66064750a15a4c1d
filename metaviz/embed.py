"""Task embeddings: where adaptation moves the meta-parameters, for hundreds of tasks at once.

One direction, one step per function: sample N tasks from a split (`sample_tasks`) -> adapt
them all, a batch of tasks at a time (`collect_updates`: metaviz.batched's matmul convolutions
for the conv net, torch.func.vmap for the others; the tests check both against the plain inner loop) -> update vectors dtheta = theta_K - theta_0 of every adapted
layer, or of one -> PCA (randomized solver), then UMAP, or PCA or t-SNE alone (`embed_updates`)
-> an `Embedding`: 2-D coordinates with per-task metadata aligned row by row, and its
trustworthiness. `neighbour_purity` and `neighbour_r2` measure what structure it shows.

The conv net's update vectors are ~112k wide. Above SKETCH_WIDTH columns they are sketched,
batch by batch, by a sparse random projection (`Sketch`; Johnson-Lindenstrauss: pairwise
distances survive within a few percent), so 2,000 tasks never hold 2,000 x 112k floats and a
cached result stays a few megabytes.

umap-learn compiles its numba kernels on first use (15-25 s on this 2-core machine), in every
new process: its kernels are not declared `cache=True`. `import_umap` switches numba's disk
cache on for them as umap imports, so only the first process ever compiles (a later one
loads them in about a second), and `start_warm_up()` runs that import and a tiny fit in a
background thread: the dashboard starts it once it has been idle for a few seconds after a
page (usually the first), and a map whose warm-up has not run starts it while its tasks
adapt. umap, numba and scikit-learn are imported inside functions (under
metaviz.import_lock): nothing here slows the dashboard's start.
"""
from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from metaviz import batched
from metaviz.adaptation import adapted_names, inner_loop, task_loss
from metaviz.checkpoints import Checkpoint
from metaviz.import_lock import SCIKIT_LEARN_IMPORTS
from metaviz.models import layer_of
from metaviz.tasks import Task, sample_task

Progress = Callable[[float, str], None]

METHODS = {"umap": "PCA, then UMAP", "tsne": "PCA, then t-SNE", "pca": "PCA alone"}
DEFAULT_TASKS, MIN_TASKS, MAX_TASKS = 200, 20, 2000
SKETCH_WIDTH = 2048  # update vectors wider than this are sketched to this many columns
PCA_COMPONENTS = 50  # what UMAP / t-SNE start from (scikit-learn's advice for t-SNE)
BATCH_SIZE = 20  # tasks adapted, measured and sketched together
# A batch at once: for the conv net (metaviz.batched) about 2x faster than task by task at 20
# tasks a batch, 1.7-1.8x at 10 or 40 (benchmarks/adaptation.py, a busy machine); for the
# others one vmap(grad) per step, 1.3-1.8x at 10 or 25 (benchmarks/embed.py).
VECTORISE = True
# Threads adapting batches side by side (each with torch's one thread, pages/_shared.py): a
# 500-task map is batch work the user waits for, so it may take the machine's cores.
WORKERS = max(1, int(os.environ.get("METAVIZ_EMBED_WORKERS", min(4, os.cpu_count() or 1))))
NEIGHBOURS = 10  # k of the trustworthiness and neighbour measures


@dataclass(frozen=True)
class TaskUpdates:
    """What N adaptations did: one update vector and one metadata row per task."""

    vectors: np.ndarray  # [N, D] float32; sketched to SKETCH_WIDTH columns when wider
    metadata: dict[str, np.ndarray]  # column name -> [N] values
    layer: str | None  # None: every adapted layer
    width: int  # parameters in one update vector, before any sketching
    dataset: str = ""  # the tasks' dataset (a checkpoint's `dataset`): what the map's cards call a group


@dataclass(frozen=True)
class Embedding:
    coordinates: np.ndarray  # [N, 2]
    metadata: dict[str, np.ndarray]  # column name -> [N] values; row i describes point i
    method: str  # a METHODS key
    settings: dict = field(default_factory=dict)  # the method's settings, as used
    random_state: int = 0
    trustworthiness: float = float("nan")  # of the 2-D picture against the update vectors
    neighbours: int = NEIGHBOURS
    dataset: str = ""  # as TaskUpdates.dataset

    def __len__(self) -> int:
        return len(self.coordinates)

    def subset(self, rows) -> Embedding:
        """Only these points (indices or a boolean mask), each keeping its own metadata row."""
        rows = np.asarray(rows)
        return replace(self, coordinates=self.coordinates[rows],
                       metadata={name: column[rows] for name, column in self.metadata.items()})


# --- tasks ------------------------------------------------------------------------------------


def group_choices(dataset: str, split: str, ways: int) -> list[str]:
    """The groups (alphabets) that hold at least `ways` classes: those a one-group task can use."""
    from metaviz.data import load_classes

    groups = np.asarray(load_classes(dataset, split).groups)
    names, counts = np.unique(groups, return_counts=True)
    return [str(name) for name, count in zip(names, counts) if count >= ways]


def sample_tasks(dataset: str, split: str, ways: int, shots: int, queries: int, n_tasks: int, seed: int = 0,
                 one_group: bool = False) -> list[Task]:
    """Tasks numbered seed, seed+1, ...: task i is `sample_task(..., seed=seed+i)`, so the Task
    and Adaptation pages re-create any of them from its seed. With `one_group`, task i draws all
    its classes from one alphabet, the alphabets taking turns (groups=(alphabet,))."""
    if not MIN_TASKS <= n_tasks <= MAX_TASKS:
        raise ValueError(f"choose between {MIN_TASKS} and {MAX_TASKS} tasks, not {n_tasks}")
    groups: list[str | None] = [None]
    if one_group:
        groups = group_choices(dataset, split, ways)
        if not groups:
            raise ValueError(f"no group of the {dataset} {split} split holds {ways} classes")
    tasks = []
    for index in range(n_tasks):
        group = groups[index % len(groups)]
        tasks.append(sample_task(dataset, split, ways=ways, shots=shots, queries=queries, seed=seed + index,
                                 groups=None if group is None else (group,)))
    return tasks


# --- adaptation, vectorised over tasks ---------------------------------------------------------


def _adapt_batch(model, checkpoint: Checkpoint, names: tuple[str, ...], tasks: Sequence[Task], steps: int,
                 lr: float, vectorise: bool, before: torch.Tensor
                 ) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """First-order inner loop (as metaviz.adaptation.adapt) for tasks of one shape: the adapted
    parameters [B, ...] after `steps` steps, and per-task metrics (one batched forward pass).
    `vectorise`: the whole batch at once (metaviz.batched for the conv net, else one vmap(grad)
    call per step), else metaviz's inner_loop task by task. `before`: the tasks' outputs at
    theta_0 [B, support + query images, ...] (`scores_before`)."""
    from torch.func import grad, vmap

    frozen = {name: value for name, value in checkpoint.parameters.items() if name not in names}
    buffers = checkpoint.buffers

    def forward(adapted, x):
        return model.functional_forward({**frozen, **adapted}, buffers, x)

    def loss(adapted, x, y):
        return task_loss(forward(adapted, x), y)

    support_x, support_y = torch.stack([t.support_x for t in tasks]), torch.stack([t.support_y for t in tasks])
    query_x, query_y = torch.stack([t.query_x for t in tasks]), torch.stack([t.query_y for t in tasks])
    # Support and query images in one forward pass per parameter set: each image is normalised
    # on its own (DESIGN.md), so its output does not depend on its batch.
    images, shots = torch.cat([support_x, query_x], 1), support_x.shape[1]
    start = {name: checkpoint.parameters[name].detach() for name in names}
    outputs = {}
    if vectorise and batched.supports(model):  # the conv net: its convolutions as batched matmuls
        adapted = batched.adapt_tasks(model, checkpoint.parameters, names, support_x, support_y, steps, lr)
        both = batched.predict_tasks(model, checkpoint.parameters, adapted, images)
        outputs["after"] = (both[:, :shots], both[:, shots:])
    else:
        if vectorise:
            adapted = {name: value.expand(len(tasks), *value.shape) for name, value in start.items()}
            step = vmap(grad(loss))
            for _ in range(steps):
                gradients = step(adapted, support_x, support_y)
                adapted = {name: adapted[name] - lr * gradients[name] for name in names}
        else:
            finals = [inner_loop(model, checkpoint.parameters, buffers, task.support_x, task.support_y, steps=steps,
                                 lr=lr, adapt=names, first_order=True)[-1] for task in tasks]
            adapted = {name: torch.stack([final[name].detach() for final in finals]) for name in names}
        with torch.no_grad():
            both = vmap(forward, in_dims=(0, 0))(adapted, images)  # adapted parameters per task
        outputs["after"] = (both[:, :shots], both[:, shots:])
    outputs["before"] = (before[:, :shots], before[:, shots:])
    metrics = {}
    for when, (support_out, query_out) in outputs.items():
        metrics[f"support_loss_{when}"] = batched.task_losses(support_out, support_y).numpy()
        metrics[f"query_loss_{when}"] = batched.task_losses(query_out, query_y).numpy()
        if query_y.dtype == torch.long:
            metrics[f"query_accuracy_{when}"] = (query_out.argmax(-1) == query_y).float().mean(1).numpy()
    return {name: value.detach() for name, value in adapted.items()}, metrics


SCORE_CHUNK = 150  # images per forward pass in scores_before (75-150 equal here; 300 or 600 about 10% slower)


def _fingerprints(sets: Sequence[torch.Tensor]) -> np.ndarray:
    """One 64-bit number per image of every [n, ...] tensor in `sets`, from its bytes (a random
    linear hash, wrapping): equal images get equal numbers; unequal ones almost never do, and
    scores_before checks."""
    weights = np.random.default_rng(0).integers(1, 2**62, sets[0][0].numel(), dtype=np.int64)
    with np.errstate(over="ignore"):
        return np.concatenate([images.flatten(1).view(torch.int32).numpy().astype(np.int64) @ weights
                               for images in sets])


def scores_before(model, checkpoint: Checkpoint, tasks: Sequence[Task], map_=map) -> torch.Tensor:
    """Every task's outputs at theta_0 [tasks, support + query images, ...] (tasks of one shape).
    All tasks start from theta_0, so an image in several tasks (about 40% of a 500-task Omniglot
    map's images) is scored once; `map_` runs the forward passes (a thread pool's map runs them
    side by side)."""
    sets = [images for task in tasks for images in (task.support_x, task.query_x)]
    _, first, where = np.unique(_fingerprints(sets), return_index=True, return_inverse=True)
    where = torch.from_numpy(where.reshape(len(tasks), -1))
    offsets = np.cumsum([0] + [len(images) for images in sets])
    owner = np.searchsorted(offsets, first, side="right") - 1  # which set holds each distinct image
    distinct = torch.stack([sets[s][i] for s, i in zip(owner, first - offsets[owner])])
    if not all(torch.equal(distinct[row], torch.cat([task.support_x, task.query_x]))
               for row, task in zip(where, tasks)):  # two images shared a fingerprint: score every one
        distinct = torch.cat(sets)
        where = torch.arange(len(distinct)).reshape(len(tasks), -1)

    def score(chunk: torch.Tensor) -> torch.Tensor:
        return model.predict(checkpoint.parameters, checkpoint.buffers, chunk)

    outputs = torch.cat(list(map_(score, distinct.split(SCORE_CHUNK))))
    return outputs[where]


SKETCH_PER_COLUMN = 4  # output columns each input column is added into


@dataclass(frozen=True)
class Sketch:
    """A sparse Johnson-Lindenstrauss projection (Kane & Nelson's block construction): the
    SKETCH_WIDTH output columns form SKETCH_PER_COLUMN blocks, and each input column is added,
    with a random sign, into one column of every block, scaled by 1/sqrt(SKETCH_PER_COLUMN).
    Pairwise distances survive within a few percent. Drawn in milliseconds, where
    scikit-learn's SparseRandomProjection took about 3 s for the conv net's 112k columns."""

    columns: torch.Tensor  # [SKETCH_PER_COLUMN, width]: the output column of each input column, per block
    signs: torch.Tensor  # [SKETCH_PER_COLUMN, width]: +-1/sqrt(SKETCH_PER_COLUMN)

    @classmethod
    def draw(cls, width: int, random_state: int) -> Sketch:
        generator = torch.Generator().manual_seed(random_state)
        block = SKETCH_WIDTH // SKETCH_PER_COLUMN
        offsets = torch.arange(SKETCH_PER_COLUMN).unsqueeze(1) * block
        columns = offsets + torch.randint(block, (SKETCH_PER_COLUMN, width), generator=generator)
        signs = torch.randint(2, (SKETCH_PER_COLUMN, width), generator=generator) * 2.0 - 1.0
        return cls(columns, signs / SKETCH_PER_COLUMN**0.5)

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        rows = torch.from_numpy(np.ascontiguousarray(vectors, dtype=np.float32))
        sketched = rows.new_zeros(rows.shape[0], SKETCH_WIDTH)
        for columns, signs in zip(self.columns, self.signs):
            sketched.index_add_(1, columns, rows * signs)
        return sketched.numpy()


def _sketcher(width: int, random_state: int) -> Sketch | None:
    return Sketch.draw(width, random_state) if width > SKETCH_WIDTH else None


def collect_updates(checkpoint: Checkpoint, n_tasks: int = DEFAULT_TASKS, seed: int = 0, layer: str | None = None,
                    steps: int | None = None, lr: float | None = None, adapt_layers: Sequence[str] | None = None,
                    shots: int | None = None, queries: int | None = None, one_group: bool = False,
                    batch_size: int = BATCH_SIZE, vectorise: bool = VECTORISE, random_state: int = 0,
                    workers: int = WORKERS, progress: Progress | None = None,
                    while_adapting: Callable[[], object] | None = None) -> TaskUpdates:
    """Samples `n_tasks` tasks from the checkpoint's meta-test split (see `sample_tasks`), adapts
    each with the checkpoint's inner loop (steps, lr, adapted layers and task shape, unless
    given) and collects their update vectors: every adapted layer's, or only `layer`'s.
    `workers` threads adapt batches side by side; the result does not depend on how many.
    `while_adapting` is called once the tasks are drawn and scored, just before they adapt
    (the page starts UMAP's warm-up there: see `start_warm_up`)."""
    steps = checkpoint.inner_steps if steps is None else int(steps)
    lr = checkpoint.inner_lr if lr is None else float(lr)
    if steps < 1:
        raise ValueError("at least one adaptation step is needed for a task to move the parameters")
    names = adapted_names(checkpoint.parameters, checkpoint.adapt_layers if adapt_layers is None else adapt_layers)
    if layer is not None:
        if layer not in {layer_of(name) for name in names}:
            raise ValueError(f"layer {layer!r} does not adapt in this checkpoint")
        kept = tuple(name for name in names if layer_of(name) == layer)
    else:
        kept = names
    shots = checkpoint.shots if shots is None else shots
    queries = checkpoint.queries if queries is None else queries
    if progress:
        progress(0.0, f"Drawing {n_tasks} tasks…")
    tasks = sample_tasks(checkpoint.dataset, checkpoint.test_split, checkpoint.ways, shots, queries, n_tasks, seed,
                         one_group=one_group and not checkpoint.is_regression)
    model = checkpoint.build_model()
    width = sum(checkpoint.parameters[name].numel() for name in kept)
    sketch = _sketcher(width, random_state)

    def one_batch(start: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        adapted, batch_metrics = _adapt_batch(model, checkpoint, names, tasks[start : start + batch_size], steps, lr,
                                              vectorise, before[start : start + batch_size])
        update = torch.cat([(adapted[name] - checkpoint.parameters[name]).flatten(1) for name in kept], 1).numpy()
        return np.linalg.norm(update, axis=1), update if sketch is None else sketch.transform(update), batch_metrics

    vectors, norms, metrics = [], [], []
    # Batches are independent, and torch lets go of the GIL inside its kernels: WORKERS threads
    # of one torch thread each keep that many cores busy (1.6-1.9x with two). Results come
    # back in order, and progress is reported from this thread (Streamlit's elements need it).
    with ThreadPoolExecutor(max(1, workers)) as pool:
        if progress:
            progress(0.0, f"Scoring the {n_tasks} tasks' images before adapting…")
        before = scores_before(model, checkpoint, tasks, pool.map)
        if while_adapting:
            while_adapting()
        for done, (norm, vector, batch_metrics) in enumerate(pool.map(one_batch, range(0, n_tasks, batch_size)), 1):
            norms.append(norm)
            vectors.append(vector)
            metrics.append(batch_metrics)
            if progress:
                finished = min(done * batch_size, n_tasks)
                progress(finished / n_tasks, f"Adapted {finished} of {n_tasks} tasks")
    metadata = task_metadata(tasks)
    metadata["update_norm"] = np.concatenate(norms)
    metadata |= {name: np.concatenate([m[name] for m in metrics]) for name in metrics[0]}
    return TaskUpdates(np.concatenate(vectors).astype(np.float32), metadata, layer, width, checkpoint.dataset)


def _objects(values: list) -> np.ndarray:
    """An object array of `values` (tuples stay whole: np.array would make a 2-D array of them)."""
    column = np.empty(len(values), dtype=object)
    column[:] = values
    return column


def task_metadata(tasks: Sequence[Task]) -> dict[str, np.ndarray]:
    """Per-task columns: number, seed and what re-creates the task; a thumbnail (a data URI:
    metaviz.thumbnails); classes and alphabets (image tasks), amplitude and phase (sinusoids)."""
    from metaviz.thumbnails import task_thumbnail

    metadata = {"task": np.arange(len(tasks)), "seed": np.array([t.source["seed"] for t in tasks]),
                "thumbnail": _objects([task_thumbnail(t) for t in tasks])}
    if tasks[0].is_regression:
        metadata["amplitude"] = np.array([t.source["amplitude"] for t in tasks])
        metadata["phase"] = np.array([t.source["phase"] for t in tasks])
        return metadata
    from metaviz.data import load_classes

    source = tasks[0].source
    pool = load_classes(source["dataset"], source["split"])
    group_of = dict(zip(pool.class_names, pool.groups))
    alphabets = [tuple(sorted({group_of[name] for name in t.class_names})) for t in tasks]
    metadata["classes"] = _objects([t.class_names for t in tasks])
    metadata["alphabets"] = _objects(alphabets)
    # One alphabet names the task's; several read "mixed", a category of its own.
    metadata["alphabet"] = _objects([names[0] if len(names) == 1 else "mixed" for names in alphabets])
    metadata["groups"] = _objects([tuple(t.source.get("groups", ())) for t in tasks])  # what re-creates it
    return metadata


# --- projection ---------------------------------------------------------------------------------


_warm_up_lock = threading.Lock()
_warm_up_thread: threading.Thread | None = None


def import_umap():
    """umap, its numba kernels compiled once per installation instead of once per process:
    while umap imports, numba.njit declares every kernel `cache=True` (numba's disk cache, next
    to umap's sources, else numba's user cache). That covers the two kernels umap.utils compiles
    for a fixed signature as it is imported, which switching the cache on after the import
    could not reach (loading them instead: the import 2.71-2.86 -> 2.54-2.81 s). A kernel numba
    cannot cache just compiles as before. Importing umap anywhere else first would miss this:
    metaviz imports it only here."""
    with SCIKIT_LEARN_IMPORTS:
        if "umap" in sys.modules:
            return sys.modules["umap"]
        import numba

        declared = numba.njit

        def njit_with_cache(*args, **options):
            try:
                return declared(*args, **{"cache": True, **options})
            except RuntimeError:  # no writable cache location: compile in memory
                return declared(*args, **options)

        numba.njit = njit_with_cache
        try:
            import umap
        finally:
            numba.njit = declared
        return umap


def _compile_umap() -> None:
    umap = import_umap()
    points = np.random.default_rng(0).normal(size=(120, 8)).astype(np.float32)
    umap.UMAP(n_neighbors=10, random_state=0, n_epochs=20, n_jobs=1).fit_transform(points)


def start_warm_up() -> threading.Thread:
    """Imports umap and compiles (or loads) its numba kernels in a daemon thread, once per
    process; returns the thread. Best started while nothing else runs (the dashboard: once idle
    after a page) or while torch works (the tasks adapting): the import is mostly Python
    holding the GIL, and beside the drawing of 500 tasks, which is Python too, it made that
    0.4-0.8 s step take 3.3 s in a fresh process."""
    global _warm_up_thread
    with _warm_up_lock:
        if _warm_up_thread is None:
            _warm_up_thread = threading.Thread(target=_compile_umap, name="umap-warm-up", daemon=True)
            _warm_up_thread.start()
        return _warm_up_thread


def project(vectors: np.ndarray, method: str = "umap", random_state: int = 0, pca_components: int = PCA_COMPONENTS,
            n_neighbors: int = 15, min_dist: float = 0.1, perplexity: float = 30.0) -> tuple[np.ndarray, dict]:
    """[N, D] -> [N, 2] coordinates, and the settings actually used (some shrink for small N)."""
    with SCIKIT_LEARN_IMPORTS:
        from sklearn.decomposition import PCA

    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, not {method!r}")
    count, width = vectors.shape
    components = 2 if method == "pca" else max(2, min(pca_components, count - 1, width))
    reduced = PCA(components, svd_solver="randomized", random_state=random_state).fit_transform(vectors)
    settings = {"pca_components": components}
    if method == "pca":
        return reduced.astype(np.float32), settings
    if method == "tsne":
        with SCIKIT_LEARN_IMPORTS:
            from sklearn.manifold import TSNE

        perplexity = float(min(perplexity, (count - 1) / 3))  # t-SNE needs perplexity < N
        settings["perplexity"] = perplexity
        coordinates = TSNE(2, perplexity=perplexity, init="pca", random_state=random_state).fit_transform(reduced)
        return coordinates.astype(np.float32), settings
    start_warm_up().join()  # done by now, normally, while the tasks adapted
    umap = import_umap()

    settings |= {"n_neighbors": int(min(n_neighbors, count - 1)), "min_dist": float(min_dist)}
    # A random_state makes UMAP single-threaded and repeatable: the same state, the same picture.
    reducer = umap.UMAP(n_neighbors=settings["n_neighbors"], min_dist=min_dist, random_state=random_state,
                        n_jobs=1)
    return reducer.fit_transform(reduced).astype(np.float32), settings


def neighbour_count(count: int, k: int = NEIGHBOURS) -> int:
    """k for N points: trustworthiness needs k < N / 2."""
    return max(1, min(k, (count - 1) // 2))


def embed_updates(updates: TaskUpdates, method: str = "umap", random_state: int = 0, **settings) -> Embedding:
    """The update vectors projected to 2-D (see `project`), scored by trustworthiness: how many
    of each point's neighbours in the picture are also its neighbours among the update vectors
    (1 = all; around 0.5 for a random picture)."""
    with SCIKIT_LEARN_IMPORTS:
        # sklearn.decomposition loads its BLAS before the limit below, which covers loaded libraries only.
        import sklearn.decomposition  # noqa: F401
        from sklearn.manifold import trustworthiness

    # One BLAS / OpenMP thread, as for torch (see pages/_shared.load_checkpoint): with every core
    # busy, their spinning threads made a t-SNE of 160 points take 213 s instead of 11 s, and
    # a PCA of them 19 s (a loaded 2-core machine); at <= 2,000 points one thread loses little.
    with threadpool_limits(limits=1):
        coordinates, used = project(updates.vectors, method, random_state, **settings)
        k = neighbour_count(len(coordinates))
        score = float(trustworthiness(updates.vectors, coordinates, n_neighbors=k))
    return Embedding(coordinates, dict(updates.metadata), method, used, random_state, score, k, updates.dataset)


# --- structure measures -------------------------------------------------------------------------


def _neighbours(points: np.ndarray, k: int) -> np.ndarray:
    """[N, k] indices of each point's k nearest other points."""
    with SCIKIT_LEARN_IMPORTS:
        from sklearn.neighbors import NearestNeighbors

    return NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points, return_distance=False)[:, 1:]


@dataclass(frozen=True)
class Purity:
    observed: float  # mean share of a point's k nearest neighbours that share its label
    chance: float  # the same with the labels shuffled (mean over shuffles)
    chance_sd: float
    k: int


def neighbour_purity(points: np.ndarray, labels, k: int = NEIGHBOURS, shuffles: int = 200,
                     random_state: int = 0) -> Purity:
    """Do points with the same label (alphabet) sit closer than chance? The share of each
    point's k nearest neighbours with its label, against the labels shuffled over the points."""
    labels = np.asarray(labels)
    k = neighbour_count(len(points), k)
    neighbours = _neighbours(np.asarray(points), k)
    share = lambda values: float((values[neighbours] == values[:, None]).mean())  # noqa: E731
    rng = np.random.default_rng(random_state)
    chance = np.array([share(rng.permutation(labels)) for _ in range(shuffles)])
    return Purity(share(labels), float(chance.mean()), float(chance.std()), k)


def neighbour_r2(points: np.ndarray, values, k: int = NEIGHBOURS) -> float:
    """How well the picture orders a number (amplitude, phase): R^2 of predicting each point's
    value as the mean over its k nearest other points. 1 = neighbours agree exactly; about 0
    or below = the picture ignores it."""
    values = np.asarray(values, dtype=float)
    predicted = values[_neighbours(np.asarray(points), neighbour_count(len(points), k))].mean(1)
    return float(1 - ((values - predicted) ** 2).sum() / ((values - values.mean()) ** 2).sum())


def structure_measures(embedding: Embedding, shuffles: int = 200) -> dict[str, Purity | float]:
    """What the picture's neighbourhoods show: alphabet purity against chance when the tasks
    each come from one alphabet ("alphabet"), how well neighbours agree on a sine wave's
    amplitude and phase ("amplitude", "phase": R^2)."""
    meta, points = embedding.metadata, embedding.coordinates
    measures: dict[str, Purity | float] = {}
    if "alphabet" in meta and "mixed" not in set(meta["alphabet"].tolist()) and len(set(meta["alphabet"].tolist())) > 1:
        measures["alphabet"] = neighbour_purity(points, meta["alphabet"].astype(str), shuffles=shuffles)
    for name in ("amplitude", "phase"):
        if name in meta:
            measures[name] = neighbour_r2(points, meta[name])
    return measures
