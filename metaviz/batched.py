"""Many tasks' first-order adaptation at once, for the conv net: batch work (task embeddings),
never a single interactive task.

Each task has its own copy of the parameters, so its convolutions cannot share a kernel call
with other tasks'. Run one task at a time, PyTorch's convolutions on 5 small images reach
15-20% of this CPU's matmul rate, and torch.func.vmap's grouped convolutions gain little
(benchmarks/README.md). Here each 3x3 stride-2 convolution is written as an explicit
patch matrix (im2col) times the task's weight matrix, so T tasks' convolutions become one
batched matrix product; the weights stay in that matrix layout for all steps. The numbers
equal metaviz.adaptation.inner_loop's (first order) within float32 rounding
(tests/test_batched.py); benchmarks/adaptation.py measures the speed.

Supported: metaviz.models.ConvNet with per-image normalisation ("layer") or none. Anything
else (MLPs, imported BatchNorm nets) answers False to `supports`; callers use their own path.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.nn import functional as F

from metaviz.models import ConvNet

Params = dict[str, torch.Tensor]


def supports(model: torch.nn.Module) -> bool:
    return isinstance(model, ConvNet) and model.norm in ("layer", "none")


def _im2col(images: torch.Tensor) -> torch.Tensor:
    """[N, H, W, C] -> [N, Ho, Wo, 9C]: every 3x3 patch (stride 2, zero padding 1) as a row,
    columns in (ky, kx, c) order."""
    n, height, width, channels = images.shape
    out_h, out_w = (height + 1) // 2, (width + 1) // 2
    padded = F.pad(images, (0, 0, 1, 1, 1, 1))
    # Every window at once as a strided view [N, Ho, Wo, 3, 3, C]; reshape makes the one copy.
    step_n, step_y, step_x, step_c = padded.stride()
    windows = padded.as_strided((n, out_h, out_w, 3, 3, channels),
                                (step_n, 2 * step_y, 2 * step_x, step_y, step_x, step_c))
    return windows.reshape(n, out_h, out_w, 9 * channels)


def _col2im(patches: torch.Tensor, image_shape: torch.Size) -> torch.Tensor:
    """The adjoint of _im2col: every patch entry added back onto the pixel it came from."""
    n, height, width, channels = image_shape
    out_h, out_w = (height + 1) // 2, (width + 1) // 2
    patches = patches.reshape(n, out_h, out_w, 9, channels)
    padded = patches.new_zeros(n, height + 2, width + 2, channels)
    for k in range(9):
        ky, kx = divmod(k, 3)
        padded[:, ky : ky + 2 * out_h - 1 : 2, kx : kx + 2 * out_w - 1 : 2] += patches[:, :, :, k]
    return padded[:, 1 : height + 1, 1 : width + 1]


class _Im2col(torch.autograd.Function):
    """_im2col with _col2im as its backward, written out because autograd's own backward of nine
    strided slices allocates and sums nine padded tensors, which cost a third of the whole step.
    The two are each other's adjoint, so second-order MAML's backward of the backward is again
    _im2col (_Col2im), not nine more padded tensors."""

    @staticmethod
    def forward(ctx, images: torch.Tensor) -> torch.Tensor:
        ctx.image_shape = images.shape
        return _im2col(images)

    @staticmethod
    def backward(ctx, grad_patches: torch.Tensor) -> torch.Tensor:
        return _Col2im.apply(grad_patches, ctx.image_shape)


class _Col2im(torch.autograd.Function):
    @staticmethod
    def forward(ctx, patches: torch.Tensor, image_shape: torch.Size) -> torch.Tensor:
        return _col2im(patches, image_shape)

    @staticmethod
    def backward(ctx, grad_images: torch.Tensor) -> tuple[torch.Tensor, None]:
        return _Im2col.apply(grad_images), None


def to_matmul_layout(name: str, value: torch.Tensor) -> torch.Tensor:
    """A conv weight [..., O, C, 3, 3] as [..., 9C, O] (rows in _Im2col's column order); other
    parameters unchanged."""
    if not name.endswith("conv.weight"):
        return value
    value = value.movedim(-4, -1).movedim(-4, -2)  # [..., 3, 3, C, O]
    return value.reshape(*value.shape[:-4], -1, value.shape[-1])


def from_matmul_layout(name: str, value: torch.Tensor, shape: torch.Size) -> torch.Tensor:
    """The inverse of to_matmul_layout for a parameter whose own shape is `shape`."""
    if not name.endswith("conv.weight"):
        return value
    out_channels, in_channels = shape[-4], shape[-3]
    value = value.reshape(*value.shape[:-2], 3, 3, in_channels, out_channels)
    return value.movedim(-2, -4).movedim(-1, -4).contiguous()


def forward_tasks(model: ConvNet, params: Params, images: torch.Tensor, twice_differentiated: bool = False
                  ) -> torch.Tensor:
    """Outputs [T, n, classes] for images [T, n, C, H, W]; every parameter [T, ...] in matmul
    layout (task t's copy first index t). `twice_differentiated`: for second-order MAML, whose
    meta-gradient differentiates the inner steps' gradients again (see the normalisation below)."""
    tasks, n = images.shape[:2]
    x = images.flatten(0, 1).permute(0, 2, 3, 1)  # channels last: patches are rows
    for index in range(len(model.blocks)):
        prefix = f"blocks.{index}."
        patches = _Im2col.apply(x)
        out_h, out_w = patches.shape[1:3]
        out = torch.baddbmm(params[prefix + "conv.bias"].unsqueeze(1),
                            patches.reshape(tasks, n * out_h * out_w, -1), params[prefix + "conv.weight"])
        channels = out.shape[-1]
        if model.norm == "layer":  # per image over all its positions and channels, as F.group_norm(x, 1)
            # group_norm with one group is the same normalisation, 2.4x faster than layer_norm on the
            # first layer's 12,544 outputs per image. Second order keeps layer_norm, which training
            # was checked with: in one float64 check group_norm's double backward came out 1e-3 off
            # where layer_norm's was 2e-6 (in others the two were alike; benchmarks/README.md).
            if twice_differentiated:
                out = F.layer_norm(out.reshape(tasks, n, -1), (out_h * out_w * channels,), eps=1e-5)
            else:
                out = F.group_norm(out.reshape(tasks * n, 1, -1), 1, eps=1e-5)
            out = out.reshape(tasks, n * out_h * out_w, channels)
            out = out * params[prefix + "norm.weight"].unsqueeze(1) + params[prefix + "norm.bias"].unsqueeze(1)
        x = F.relu(out).reshape(tasks * n, out_h, out_w, channels)
    features = x.mean(dim=(1, 2)).reshape(tasks, n, -1)
    return torch.baddbmm(params["head.bias"].unsqueeze(1), features, params["head.weight"].transpose(1, 2))


def _per_task(parameters: Params, tasks: int) -> Params:
    """Every parameter [T, ...] in matmul layout: T views of one copy, still attached to whatever
    graph `parameters` belong to (meta-training differentiates through them)."""
    matrices = {name: to_matmul_layout(name, value) for name, value in parameters.items()}
    return {name: matrix.expand(tasks, *matrix.shape) for name, matrix in matrices.items()}


def meta_objective(model: ConvNet, parameters: Params, names: tuple[str, ...], support_x: torch.Tensor,
                   support_y: torch.Tensor, query_x: torch.Tensor, query_y: torch.Tensor, steps: int, lr: float,
                   first_order: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """MAML's meta-objective for T tasks of one shape at once: the sum over tasks of each task's
    query loss after `steps` inner steps on its support set from `parameters`, differentiable
    back to them (through the inner gradients too unless `first_order`), and the query outputs
    [T, n, classes]. The same numbers as metaviz.adaptation.inner_loop task by task, within
    float32 rounding (tests/test_batched.py)."""
    current = _per_task(parameters, support_x.shape[0])
    for _ in range(steps):
        loss = summed_task_losses(forward_tasks(model, current, support_x, not first_order), support_y)
        gradients = torch.autograd.grad(loss, [current[name] for name in names], create_graph=not first_order)
        current = current | {name: current[name] - lr * gradient for name, gradient in zip(names, gradients)}
    outputs = forward_tasks(model, current, query_x, not first_order)
    return summed_task_losses(outputs, query_y), outputs


@torch.no_grad()
def predict_tasks(model: ConvNet, shared: Params, per_task: Params, images: torch.Tensor) -> torch.Tensor:
    """Outputs [T, n, classes] for images [T, n, C, H, W]: parameters from `per_task` ([T, ...],
    usual layout) where given, else from `shared` (theta_0, one copy for all tasks).

    Task by task with PyTorch's own convolutions: without a backward pass they are 2-3x faster
    than forward_tasks' patch matrices here (20 tasks x 30 images: 0.08 s against 0.21-0.24 s,
    one thread), whose gain is in the backward pass."""
    return torch.stack([model.predict({**shared, **{name: value[task] for name, value in per_task.items()}},
                                      {}, images[task]) for task in range(images.shape[0])])


def task_losses(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """[T] each task's own loss (metaviz.adaptation.task_loss) for outputs [T, n, ...] and
    targets [T, n, ...], in one call (vmap of task_loss takes a decomposition that costs ms
    per call and imports sympy the first time, about a second)."""
    if targets.dtype == torch.long:
        per_example = F.cross_entropy(outputs.flatten(0, 1), targets.flatten(), reduction="none")
        return per_example.reshape(targets.shape).mean(1)
    return F.mse_loss(outputs, targets, reduction="none").flatten(1).mean(1)


def summed_task_losses(outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The sum over tasks of each task's own loss, in one call: task t's parameters then get
    task t's gradient only."""
    return task_losses(outputs, targets).sum()


def adaptation_steps(model: ConvNet, parameters: Params, names: tuple[str, ...], support_x: torch.Tensor,
                     support_y: torch.Tensor, steps: int, lr: float) -> Iterator[Params]:
    """First-order inner loop for T tasks of one shape (support_x [T, n, C, H, W]) from the shared
    `parameters`: every parameter [T, ...] in matmul layout (for forward_tasks) after steps 0..K."""
    return steps_on_batches(model, parameters, names, support_x.shape[0], [(support_x, support_y)] * steps, lr)


def steps_on_batches(model: ConvNet, parameters: Params, names: tuple[str, ...], tasks: int,
                     batches: list[tuple[torch.Tensor, torch.Tensor]], lr: float) -> Iterator[Params]:
    """One plain gradient step per (x [T, n, C, H, W], y [T, n]) in `batches` for T = `tasks`
    tasks at once (Reptile's inner loop takes a new mini-batch each step): every parameter
    [T, ...] in matmul layout before the first step and after each."""
    if not supports(model):
        raise ValueError("batched adaptation covers metaviz's conv net with per-image or no normalisation")
    shared = _per_task({name: value.detach() for name, value in parameters.items()}, tasks)
    adapted = {name: shared[name].clone().requires_grad_() for name in names}
    yield shared
    for x, y in batches:
        loss = summed_task_losses(forward_tasks(model, {**shared, **adapted}, x), y)
        gradients = torch.autograd.grad(loss, list(adapted.values()))
        adapted = {name: (value - lr * gradient).detach().requires_grad_()
                   for (name, value), gradient in zip(adapted.items(), gradients)}
        yield {**shared, **adapted}


def adapt_tasks(model: ConvNet, parameters: Params, names: tuple[str, ...], support_x: torch.Tensor,
                support_y: torch.Tensor, steps: int, lr: float) -> Params:
    """The parameters named in `names` after `steps` steps (see adaptation_steps), [T, ...] in
    their usual layout."""
    *_, last = adaptation_steps(model, parameters, names, support_x, support_y, steps, lr)
    return {name: from_matmul_layout(name, last[name].detach(), parameters[name].shape) for name in names}
