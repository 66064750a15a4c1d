"""Prints the Markdown table of checkpoints/README.md from the checkpoints' own metadata,
so the figures there are the ones recorded by `python -m metaviz evaluate --record`."""
import sys
from pathlib import Path

from metaviz.checkpoints import list_checkpoints, load_checkpoint

PAPER = {  # the published figure each checkpoint is compared with: (dataset, algorithm, net, shots)
    ("omniglot", "maml", "conv", 1): "98.7 ± 0.4% (MAML paper, transductive batch norm)",
    ("omniglot", "maml", "conv", 5): "99.9% (MAML paper, transductive batch norm)",
    ("omniglot", "maml", "mlp", 1): "89.7% (MAML paper, transductive batch norm)",
    ("omniglot", "anil", "conv", 1): "about MAML's (ANIL paper)",
    ("omniglot", "reptile", "conv", 1): "95.39% (Reptile paper, 50 Adam steps at test; 97.68% with transduction)",
    ("sinusoid", "maml", "mlp", 10): "MSE 0.67 / 0.38 / 0.35 after 1 / 5 / 10 steps at K = 5 (MAML paper, as quoted in issue 3)",
}


def paper_figure(checkpoint) -> str:
    key = (checkpoint.dataset, checkpoint.algorithm, checkpoint.model_config.get("kind", "conv"), checkpoint.shots)
    return PAPER.get(key, "—")


def describe(result: dict) -> str:
    if result["metric"] == "accuracy":
        return f"{100 * result['mean']:.2f} ± {100 * result['ci95']:.2f}%"
    return f"MSE {result['mean']:.3f} ± {result['ci95']:.3f}"


def main(directory: str = "checkpoints") -> None:
    print("| checkpoint | algorithm | task | meta-test (600 tasks, 95% CI) | steps | paper | training time |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for path in list_checkpoints(Path(directory)):
        checkpoint = load_checkpoint(path)
        result = checkpoint.metrics.get("meta_test")
        figure = describe(result) if result else "not evaluated"
        shape = "regression" if checkpoint.is_regression else f"{checkpoint.ways}-way {checkpoint.shots}-shot"
        hours = checkpoint.history.get("seconds", 0) / 3600
        print(f"| `{path.stem}` | {checkpoint.algorithm} | {checkpoint.dataset} {shape} | {figure} | "
              f"{result['steps'] if result else ''} | {paper_figure(checkpoint)} "
              f"| {hours:.1f} h |")


if __name__ == "__main__":
    main(*sys.argv[1:])
