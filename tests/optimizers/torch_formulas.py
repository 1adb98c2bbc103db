"""torch's optimizer updates written out in NumPy (what the reference's optimizers do), for the unit tests."""
import numpy as np


def torch_adamw(params, grads_per_step, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-8, weight_decay=1e-2,
                decay_mask=None):
    """The reference's opt/AdamW.py (= torch.optim.AdamW): decay, then the moments, epsilon after the bias
    correction. One update per entry of ``grads_per_step``; returns the weights after each step."""
    params = [np.array(p, copy=True) for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    history = []
    for t, grads in enumerate(grads_per_step, start=1):
        for i, g in enumerate(grads):
            if decay_mask is None or decay_mask[i]:
                params[i] = params[i] * (1 - lr * weight_decay)
            m[i] = beta_1 * m[i] + (1 - beta_1) * g
            v[i] = beta_2 * v[i] + (1 - beta_2) * g * g
            denominator = np.sqrt(v[i]) / np.sqrt(1 - beta_2 ** t) + epsilon
            params[i] = params[i] - lr / (1 - beta_1 ** t) * m[i] / denominator
        history.append([p.copy() for p in params])
    return history


def torch_sgd(params, grads_per_step, lr, momentum=0.9, dampening=0.9, weight_decay=0.0, decay_mask=None):
    """torch.optim.SGD.step (the reference two_stream2.py): coupled L2 decay, momentum buffer with dampening;
    the first step stores the raw gradient in the buffer. Returns the weights after each step."""
    params, buffers, history = [np.array(p, copy=True) for p in params], [None] * len(params), []
    for grads in grads_per_step:
        for i, g in enumerate(grads):
            if weight_decay and (decay_mask is None or decay_mask[i]):
                g = g + weight_decay * params[i]
            buffers[i] = g.copy() if buffers[i] is None else momentum * buffers[i] + (1 - dampening) * g
            params[i] = params[i] - lr * buffers[i]
        history.append([p.copy() for p in params])
    return history


def mean_of_groups(micro_batches, steps):
    """The gradient of each optimizer step under accumulation: the reference sums the gradients of
    ``loss / iter_size`` over ``iter_size`` micro-batches; Keras averages them. The same numbers."""
    return [[sum(group[j] for group in micro_batches[k:k + steps]) / steps for j in range(len(micro_batches[0]))]
            for k in range(0, len(micro_batches), steps)]


def random_problem(seed, dtype, steps, scales=(1.0, 1e-7)):
    """Two weights (a kernel and a bias) and ``steps`` gradients; the bias's gradients are ``scales[1]`` small,
    where epsilon's placement decides the step."""
    rng = np.random.default_rng(seed)
    init = [rng.normal(size=(3, 4)).astype(dtype), rng.normal(size=(4,)).astype(dtype)]
    grads = [[(rng.normal(size=p.shape) * s).astype(dtype) for p, s in zip(init, scales)] for _ in range(steps)]
    return init, grads


def torch_reference_loop(make_torch_optimizer, init, micro_batches, accumulation):
    """The reference's training loop on given gradients: each micro-batch adds its gradient of
    ``loss / iter_size``; ``step()`` and ``zero_grad()`` every ``iter_size`` batches. ``make_torch_optimizer``
    takes the two parameters (kernel, bias) and returns the optimizer. Returns the final weights."""
    import torch

    params = [torch.tensor(p, requires_grad=True) for p in init]
    optimizer, k = make_torch_optimizer(*params), accumulation or 1
    for i, grads in enumerate(micro_batches):
        for p, g in zip(params, grads):
            p.grad = (p.grad if p.grad is not None else 0) + torch.tensor(g) / k
        if (i + 1) % k == 0:
            optimizer.step()
            optimizer.zero_grad()
    return [p.detach().numpy() for p in params]


def keras_loop(optimizer, init, micro_batches, dtype="float64", exclude_bias=True):
    """``optimizer.apply`` on every micro-batch of a (kernel, bias) pair, the bias excluded from weight decay.
    Returns the final weights."""
    import keras

    variables = [keras.Variable(p, dtype=dtype, name=n) for p, n in zip(init, ("kernel", "bias"))]
    if exclude_bias:
        optimizer.exclude_from_weight_decay(var_list=variables[1:])
    for grads in micro_batches:
        optimizer.apply(grads, variables)
    return [np.asarray(v) for v in variables]
