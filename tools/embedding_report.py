"""The structure numbers and plots of docs/embeddings.md, measured on the shipped checkpoints.

For each checkpoint: N tasks from its meta-test split (Omniglot: each task from one alphabet,
the 20 alphabets taking turns), adapted with its own inner loop; then, on the same update
vectors, the trustworthiness of each method's map, and what the map's neighbourhoods show
against chance: k-nearest-neighbour alphabet purity (Omniglot) or how well neighbours agree
on amplitude and phase (R^2, sine waves), beside the same measure in the full update space.
With --plots, the Omniglot MAML and sine-wave maps are saved as PNGs through Chromium; with
--layers, the Omniglot measures are repeated on each adapted layer's update alone.

    METAVIZ_DATA_DIR=../shared/data/omniglot OMP_NUM_THREADS=1 .venv/bin/python tools/embedding_report.py --plots
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPOSITORY = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPOSITORY))

from metaviz import embed  # noqa: E402
from metaviz.checkpoints import load_checkpoint  # noqa: E402
from metaviz.embed_figures import embedding_scatter  # noqa: E402

PLOTS = REPOSITORY / "docs" / "images"
CHECKPOINTS = ("omniglot-5w1s-maml", "omniglot-5w1s-anil", "sinusoid-maml", "digits-5w1s-maml")


def save_png(fig, path: Path) -> None:
    """The figure as Chromium draws it (plotly.js inline: no network), palette PNG."""
    from PIL import Image
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        page_file, shot = Path(folder) / "figure.html", Path(folder) / "figure.png"
        fig.update_layout(width=1000, height=640)
        fig.write_html(page_file, include_plotlyjs=True, full_html=True)
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1020, "height": 660})
            page.goto(page_file.as_uri())
            page.wait_for_selector(".main-svg")
            page.screenshot(path=str(shot))
            browser.close()
        path.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(shot) as image:
            image.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


def report(name: str, tasks: int, plots: bool) -> None:
    checkpoint = load_checkpoint(REPOSITORY / "checkpoints" / f"{name}.safetensors")
    start = time.perf_counter()
    updates = embed.collect_updates(checkpoint, n_tasks=tasks, one_group=checkpoint.dataset == "omniglot")
    print(f"\n### {name}: {tasks} tasks x {checkpoint.inner_steps} steps (lr {checkpoint.inner_lr:g}), "
          f"{updates.width:,} adapted parameters{' (sketched to %d)' % embed.SKETCH_WIDTH if updates.width > embed.SKETCH_WIDTH else ''}; "
          f"adapting took {time.perf_counter() - start:.0f} s")
    meta = updates.metadata
    if "query_accuracy_after" in meta:
        print(f"mean query accuracy {100 * meta['query_accuracy_before'].mean():.1f}% before, "
              f"{100 * meta['query_accuracy_after'].mean():.1f}% after adapting")
    print("| map | trustworthiness | measure | on the map | in the update space | chance |")
    print("| --- | --- | --- | --- | --- | --- |")
    for method in embed.METHODS:
        embedding = embed.embed_updates(updates, method)
        measures = embed.structure_measures(embedding)
        for measure, value in measures.items():
            if isinstance(value, embed.Purity):
                full = embed.neighbour_purity(updates.vectors, meta["alphabet"].astype(str))
                print(f"| {method} | {embedding.trustworthiness:.3f} | same-alphabet neighbours (k={value.k}) | "
                      f"{100 * value.observed:.1f}% | {100 * full.observed:.1f}% | "
                      f"{100 * value.chance:.1f}% ± {100 * value.chance_sd:.1f} |")
            else:
                full = embed.neighbour_r2(updates.vectors, meta[measure])
                shuffled = embed.neighbour_r2(embedding.coordinates, np.random.default_rng(0).permutation(meta[measure]))
                print(f"| {method} | {embedding.trustworthiness:.3f} | {measure} R² (k={embedding.neighbours}) | "
                      f"{value:.3f} | {full:.3f} | {shuffled:.3f} |")
        if not measures:
            print(f"| {method} | {embedding.trustworthiness:.3f} | — | — | — | — |")
        if plots and method == "umap" and name in ("omniglot-5w1s-maml", "sinusoid-maml"):
            colour = "alphabet" if "alphabet" in embedding.metadata else "amplitude"
            save_png(embedding_scatter(embedding, colour), PLOTS / f"embedding-{name}.png")


def layers_report(name: str, tasks: int, plots: bool) -> None:
    """Which layer's update knows the alphabet: purity per adapted layer (Omniglot); with
    `plots`, the map of the layer whose map groups alphabets best."""
    checkpoint = load_checkpoint(REPOSITORY / "checkpoints" / f"{name}.safetensors")
    print(f"\n### {name}, one layer's update at a time: {tasks} tasks")
    print("| layer | parameters | trustworthiness (UMAP) | same-alphabet neighbours on the map | "
          "in the update space | chance |")
    print("| --- | --- | --- | --- | --- | --- |")
    best = (0.0, None, None)
    for layer in checkpoint.adapt_layers or checkpoint.layers:
        updates = embed.collect_updates(checkpoint, n_tasks=tasks, layer=layer, one_group=True)
        embedding = embed.embed_updates(updates, "umap")
        labels = updates.metadata["alphabet"].astype(str)
        on_map, full = embed.neighbour_purity(embedding.coordinates, labels), embed.neighbour_purity(updates.vectors, labels)
        print(f"| {layer} | {updates.width:,} | {embedding.trustworthiness:.3f} | {100 * on_map.observed:.1f}% | "
              f"{100 * full.observed:.1f}% | {100 * full.chance:.1f}% ± {100 * full.chance_sd:.1f} |", flush=True)
        best = max(best, (on_map.observed, layer, embedding), key=lambda entry: entry[0])
    if plots and best[2] is not None:
        save_png(embedding_scatter(best[2], "alphabet"), PLOTS / f"embedding-{name}-{best[1]}.png")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500)
    parser.add_argument("--plots", action="store_true")
    parser.add_argument("--layers", action="store_true", help="also per layer, for the Omniglot checkpoints")
    parser.add_argument("checkpoints", nargs="*", default=CHECKPOINTS)
    args = parser.parse_args()
    torch.set_num_threads(1)
    embed.start_warm_up()
    for name in args.checkpoints:
        report(name, args.tasks, args.plots)
        if args.layers and name.startswith("omniglot"):
            layers_report(name, args.tasks, args.plots)


if __name__ == "__main__":
    main()
