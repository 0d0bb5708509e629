"""Hook-based activity (energy) regulariser."""

from collections.abc import Iterable, Sequence
from functools import partial

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from ._checks import compute_dtype

class RecurrentState(nn.Module):
    """The base of a recurrent cell of a model's own whose output is its state h_t, which the
    energy counts as the activity of a recurrent layer, as it counts torch's cells' (RNNCellBase)."""


# Recurrent cells too: their output is the state, the activity of a recurrent layer (an LSTM cell's h).
DEFAULT_MODULE_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv2d, nn.Linear, nn.ConvTranspose2d, nn.RNNCellBase, RecurrentState)


class EnergyLoss(nn.Module):
    """Mean activity of the hooked modules, differentiable w.r.t. the model.

    Forward hooks record, for every call t of every hooked module m with output a (batch B):

        e_{m, t} = (1 / B) * sum_b ||a_b||_p / n_units(a_b)
        energy   = sum_{m, t} e_{m, t} / (M * T)

    M = number of hooked modules that ran since the last `reset`, T = calls per module (the
    largest count, e.g. timesteps). A hooked module that did not run (an unused head) does not
    dilute the energy. `forward()` returns a zero when nothing ran.

    The accumulator holds the graph of the recorded activations until `reset()` (or `remove()`):
    call it once per step, after using the value (`MultiHeadLoss` does). Use as a context manager
    so hooks cannot outlive their use:

        with EnergyLoss(p=1).register(model) as energy:
            ...
    """

    def __init__(
        self, *, p: int = 1, module_types: Sequence[type[nn.Module]] = DEFAULT_MODULE_TYPES
    ) -> None:
        super().__init__()
        if isinstance(p, bool) or not isinstance(p, int) or p < 1:
            raise ValueError(f"p must be an int >= 1, but got {p!r}")
        module_types = tuple(module_types)
        if not module_types or not all(
            isinstance(t, type) and issubclass(t, nn.Module) for t in module_types
        ):
            raise ValueError(
                f"module_types must be a non-empty sequence of nn.Module subclasses, "
                f"but got {module_types!r}"
            )
        self.p = p
        self.module_types = module_types
        self._handles: list[RemovableHandle] = []
        # Filled in place, never reassigned: a hook runs for every module and step, and an
        # nn.Module's attribute assignment costs microseconds there.
        self._values: list[Tensor] = []  # e_{m, t}, in call order
        # Calls per hooked module, keyed by hook position: no reference to the modules is kept.
        self._calls: dict[int, int] = {}

    def register(self, model_or_modules: nn.Module | Iterable[nn.Module]) -> "EnergyLoss":
        """Hook every submodule of `module_types` in a model, or exactly the modules given."""
        if self._handles:
            raise RuntimeError(
                f"register needs no hooks in place (call remove() first), "
                f"but got {len(self._handles)} hooks"
            )
        if isinstance(model_or_modules, nn.Module):
            modules = [m for m in model_or_modules.modules() if isinstance(m, self.module_types)]
            if not modules:
                names = [t.__name__ for t in self.module_types]
                raise ValueError(
                    f"the model must contain a module of types {names}, "
                    f"but got {type(model_or_modules).__name__} without one"
                )
        else:
            # a module listed twice is one layer: hooked twice it counted twice
            modules = list(dict.fromkeys(model_or_modules))
            wrong = [type(m).__name__ for m in modules if not isinstance(m, nn.Module)]
            if not modules or wrong:
                raise ValueError(
                    f"register needs an nn.Module or a non-empty iterable of nn.Module, "
                    f"but got {wrong or 'an empty iterable'}"
                )
        self.reset()
        self._handles = [
            module.register_forward_hook(partial(self._record, index))
            for index, module in enumerate(modules)
        ]
        return self

    def _record(self, index: int, module: nn.Module, args: object, output: object) -> None:
        if isinstance(module, nn.LSTMCell):
            output = output[0]  # (h, c): the hidden state h is the layer's activity, as a GRU cell's output
        if not isinstance(output, Tensor):
            raise TypeError(
                f"energy hooks need modules that return a tensor, "
                f"but got {type(output).__name__} from {type(module).__name__}"
            )
        activation = compute_dtype(output)
        # An unbatched call (1-D output) counts as one sample.
        batch = activation.shape[0] if activation.ndim > 1 else 1
        per_sample = activation.reshape(batch, -1)
        norms = _p_norms(per_sample, self.p) / per_sample.shape[1]
        self._values.append(norms.mean())
        self._calls[index] = self._calls.get(index, 0) + 1

    def forward(self) -> Tensor:
        if not self._values:
            return torch.zeros(())
        return torch.stack(self._values).sum() / (len(self._calls) * max(self._calls.values()))

    def reset(self) -> None:
        """Drop the accumulated activity (and the graph it holds)."""
        self._values.clear()
        self._calls.clear()

    def remove(self) -> None:
        """Remove every hook and reset."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        self.reset()

    def __enter__(self) -> "EnergyLoss":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def extra_repr(self) -> str:
        names = [t.__name__ for t in self.module_types]
        return f"p={self.p}, module_types={names}, hooks={len(self._handles)}"


# Up to this p, |a|^p stays within float32 for activations up to 4e9 (and the norm of a layer
# reads 0 only where its every activation is below 1e-10): no rescaling, which costs a hook 40 to
# 70 % more.
_UNSCALED_MAX_P = 4


def _p_norms(rows: Tensor, p: int) -> Tensor:
    """||row||_p of every row. For p > 4, each row is divided by its largest |a| first and the norm
    multiplied back (||a||_p = m ||a / m||_p): the powers |a|^p of a float32 activation overflow
    from |a| = 16 at p = 32 and underflow below 0.25 at p = 64, which made the energy inf and
    its gradient NaN. The scale is detached: the value and its gradient are unchanged."""
    if p <= _UNSCALED_MAX_P:
        return torch.linalg.vector_norm(rows, ord=p, dim=1)
    scale = rows.detach().abs().amax(dim=1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)
    return scale.squeeze(1) * torch.linalg.vector_norm(rows / scale, ord=p, dim=1)

