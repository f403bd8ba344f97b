"""A small 1D convolutional network on the packet sequence, in the spirit of Deep Fingerprinting.

Sirinam et al. ("Deep Fingerprinting", CCS 2018) classify the direction
sequence of a Tor trace with blocks of 1D convolutions and max pooling,
followed by dense layers. :class:`SequenceCNNClassifier` is a smaller network
of the same shape for the ``sequence`` feature set (the first N signed packet
sizes): each position gives two channels, the direction (+1 / -1, 0 past the
end) and the size in units of 1500 bytes; two blocks of two convolutions and a
max pooling, global max and mean pooling, one hidden dense layer, dropout.

Training (Adam) has a fixed budget and stops early: at most ``max_epochs``
epochs over the training part, of which ``validation_fraction`` (stratified)
is held out; training stops when the held-out loss has not improved for
``patience`` epochs, and the parameters of the best epoch are kept. Everything
random (initialization, held-out part, batch order, dropout) derives from
``random_state``, so a fit is reproducible on one machine. It runs on JAX's
default device: the CPU with the ``deep`` extra's CPU wheels, a GPU when a
CUDA build of jaxlib is installed instead (``pip install 'jax[cuda12]'``).

JAX and optax come with ``pip install 'echolab-toolkit[deep]'`` and are only
imported when a model is fitted; :meth:`SequenceCNNClassifier.missing_requirements`
lets the comparison say what to install before any trial runs.
"""

from __future__ import annotations

import functools
import importlib.util
import time
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

#: Size unit of the second input channel (a full Ethernet frame's IP packet).
SIZE_SCALE = 1500.0


class SequenceCNNClassifier(ClassifierMixin, BaseEstimator):
    """1D CNN over signed packet sizes (rows of the ``sequence`` set), trained with early stopping.

    Parameters: ``filters`` of the two blocks (32, 64), ``kernel_size`` (8),
    ``pool`` (4: pool width and stride of each block), ``hidden`` units (128),
    ``dropout`` (0.3), ``learning_rate`` (1e-3), ``batch_size`` (32),
    ``max_epochs`` (40), ``patience`` (6), ``validation_fraction`` (0.15),
    ``random_state``. Learned: ``params_`` (the network's weights as NumPy
    arrays), ``classes_``, ``epochs_`` (trained), ``best_epoch_``,
    ``history_`` (per epoch: training loss, held-out loss and accuracy),
    ``device_`` (where JAX ran), ``fit_seconds_``.
    """

    def __init__(self, filters: tuple[int, int] | list[int] = (32, 64), kernel_size: int = 8, pool: int = 4,
                 hidden: int = 128, dropout: float = 0.3, learning_rate: float = 1e-3, batch_size: int = 32,
                 max_epochs: int = 40, patience: int = 6, validation_fraction: float = 0.15,
                 random_state: int | None = None):
        self.filters = filters
        self.kernel_size = kernel_size
        self.pool = pool
        self.hidden = hidden
        self.dropout = dropout
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.random_state = random_state

    @staticmethod
    def missing_requirements() -> list[str]:
        """The packages the model needs that are not installed (empty when it can run)."""
        return [name for name in ("jax", "optax") if importlib.util.find_spec(name) is None]

    # -- fitting --------------------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> "SequenceCNNClassifier":
        missing = self.missing_requirements()
        if missing:
            from echolab.errors import EcholabError

            raise EcholabError(f"the deep sequence model needs {', '.join(missing)}: "
                               "pip install 'echolab-toolkit[deep]'")
        import jax
        import jax.numpy as jnp
        import optax

        self._check_params()
        start = time.perf_counter()
        X = _inputs(np.asarray(X, dtype=np.float32))
        y = np.asarray(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        rng = np.random.default_rng(self.random_state)
        train, val = _holdout(y_idx, self.validation_fraction, rng)
        key = jax.random.PRNGKey(int(rng.integers(2**31)))
        key, init_key = jax.random.split(key)
        params = _init(init_key, X.shape[-1], len(self.classes_), tuple(self.filters), self.kernel_size, self.hidden)
        step, evaluate, _ = _compiled(self.kernel_size, self.pool, float(self.dropout), float(self.learning_rate))
        opt_state = optax.adam(self.learning_rate).init(params)

        batch = min(self.batch_size, len(train))
        best = (np.inf, params, 0)
        history: list[dict[str, float]] = []
        for epoch in range(1, self.max_epochs + 1):
            order = rng.permutation(train)
            losses = []
            for i in range(0, len(order) - batch + 1, batch):  # full batches: one compiled shape
                key, sub = jax.random.split(key)
                idx = order[i:i + batch]
                params, opt_state, loss = step(params, opt_state, jnp.asarray(X[idx]), jnp.asarray(y_idx[idx]), sub)
                losses.append(float(loss))
            val_loss, val_acc = _evaluate_all(evaluate, params, X[val], y_idx[val], batch)
            history.append({"epoch": epoch, "train_loss": float(np.mean(losses)), "val_loss": val_loss,
                            "val_accuracy": val_acc})
            if val_loss < best[0] - 1e-4:
                best = (val_loss, params, epoch)
            elif epoch - best[2] >= self.patience:
                break
        self.params_ = jax.tree_util.tree_map(np.asarray, best[1])
        self.best_epoch_ = best[2]
        self.epochs_ = len(history)
        self.history_ = history
        self.device_ = str(jax.devices()[0].platform)
        self.fit_seconds_ = time.perf_counter() - start
        return self

    def _check_params(self) -> None:
        ints = {"kernel_size": self.kernel_size, "pool": self.pool, "hidden": self.hidden,
                "batch_size": self.batch_size, "max_epochs": self.max_epochs, "patience": self.patience}
        for name, value in ints.items():
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if len(tuple(self.filters)) != 2 or min(self.filters) < 1:
            raise ValueError(f"filters must be two positive integers, got {self.filters!r}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not 0 < self.validation_fraction < 0.5:
            raise ValueError(f"validation_fraction must be in (0, 0.5), got {self.validation_fraction!r}")

    # -- predicting -----------------------------------------------------------------------------

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "params_")
        import jax
        import jax.numpy as jnp

        X = _inputs(np.asarray(X, dtype=np.float32))
        _, _, forward = _compiled(self.kernel_size, self.pool, float(self.dropout), float(self.learning_rate))
        params = jax.tree_util.tree_map(jnp.asarray, self.params_)
        out = []
        batch = 256
        for i in range(0, len(X), batch):
            chunk = X[i:i + batch]
            padded = np.zeros((batch, *chunk.shape[1:]), dtype=np.float32)  # one compiled shape
            padded[: len(chunk)] = chunk
            out.append(np.asarray(forward(params, jnp.asarray(padded)))[: len(chunk)])
        return np.concatenate(out) if out else np.zeros((0, len(self.classes_)))

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


# -- the network --------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _compiled(kernel_size: int, pool: int, dropout: float, learning_rate: float) -> tuple[Any, Any, Any]:
    """The jitted training step, held-out evaluation and prediction of one configuration.

    Kept per process, so the fits of a grid search and of later trials reuse
    XLA's compiled code instead of compiling again (seconds each time).
    """
    import jax
    import optax

    config = (kernel_size, pool, dropout)
    optimizer = optax.adam(learning_rate)

    def loss_fn(p, xb, yb, k):
        logits = _forward(p, xb, config, k)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    @jax.jit
    def step(p, s, xb, yb, k):
        loss, grads = jax.value_and_grad(loss_fn)(p, xb, yb, k)
        updates, s = optimizer.update(grads, s, p)
        return optax.apply_updates(p, updates), s, loss

    @jax.jit
    def evaluate(p, xb, yb):
        logits = _forward(p, xb, config, None)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb), logits.argmax(-1) == yb

    forward = jax.jit(lambda p, xb: jax.nn.softmax(_forward(p, xb, config, None)))
    return step, evaluate, forward


def _inputs(X: np.ndarray) -> np.ndarray:
    """(rows, positions) signed sizes -> (rows, positions, 2): direction and size / 1500."""
    return np.stack([np.sign(X), np.abs(X) / SIZE_SCALE], axis=-1).astype(np.float32)


def _holdout(y: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Stratified split of row indices into (train, held out); every class keeps at least one training row."""
    train, val = [], []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        n_val = min(int(round(fraction * len(rows))), len(rows) - 1)
        val.extend(rows[:n_val])
        train.extend(rows[n_val:])
    if not val:  # tiny data: hold out one row anyway so early stopping has something to watch
        val = train[-1:]
    return np.asarray(sorted(train)), np.asarray(sorted(val))


def _init(key: Any, channels: int, classes: int, filters: tuple[int, int], width: int, hidden: int) -> dict:
    import jax
    import jax.numpy as jnp

    shapes = {"c1": (width, channels, filters[0]), "c2": (width, filters[0], filters[0]),
              "c3": (width, filters[0], filters[1]), "c4": (width, filters[1], filters[1]),
              "d1": (2 * filters[1], hidden), "d2": (hidden, classes)}
    params = {}
    for name, shape in shapes.items():
        key, sub = jax.random.split(key)
        fan_in = int(np.prod(shape[:-1]))
        params[name] = {"w": jax.random.normal(sub, shape, jnp.float32) * np.sqrt(2.0 / fan_in),
                        "b": jnp.zeros(shape[-1], jnp.float32)}
    return params


def _forward(params: dict, x: Any, config: tuple[int, int, float], key: Any) -> Any:
    """Logits of a batch (batch, positions, channels); dropout only when *key* is given (training)."""
    import jax
    import jax.numpy as jnp

    _, pool, dropout = config

    def conv(h, layer):
        out = jax.lax.conv_general_dilated(h, layer["w"], (1,), "SAME", dimension_numbers=("NWC", "WIO", "NWC"))
        return out + layer["b"]

    def maxpool(h):
        return jax.lax.reduce_window(h, -jnp.inf, jax.lax.max, (1, pool, 1), (1, pool, 1), "SAME")

    def drop(h, k):
        if k is None or dropout == 0:
            return h
        keep = jax.random.bernoulli(k, 1.0 - dropout, h.shape)
        return jnp.where(keep, h / (1.0 - dropout), 0.0)

    keys = [None] * 3 if key is None else list(jax.random.split(key, 3))
    h = jax.nn.elu(conv(x, params["c1"]))
    h = maxpool(jax.nn.elu(conv(h, params["c2"])))
    h = drop(h, keys[0])
    h = jax.nn.relu(conv(h, params["c3"]))
    h = maxpool(jax.nn.relu(conv(h, params["c4"])))
    h = drop(h, keys[1])
    h = jnp.concatenate([h.max(axis=1), h.mean(axis=1)], axis=-1)
    h = drop(jax.nn.relu(h @ params["d1"]["w"] + params["d1"]["b"]), keys[2])
    return h @ params["d2"]["w"] + params["d2"]["b"]


def _evaluate_all(evaluate: Any, params: Any, X: np.ndarray, y: np.ndarray, batch: int) -> tuple[float, float]:
    """Mean loss and accuracy over held-out rows, in batches of one padded shape (padding rows not counted)."""
    import jax.numpy as jnp

    total_loss, correct = 0.0, 0
    for i in range(0, len(X), batch):
        xb, yb = X[i:i + batch], y[i:i + batch]
        n = len(xb)
        if n < batch:
            xb = np.concatenate([xb, np.zeros((batch - n, *xb.shape[1:]), np.float32)])
            yb = np.concatenate([yb, np.zeros(batch - n, yb.dtype)])
        losses, hits = evaluate(params, jnp.asarray(xb), jnp.asarray(yb))
        total_loss += float(np.asarray(losses)[:n].sum())
        correct += int(np.asarray(hits)[:n].sum())
    return total_loss / max(len(X), 1), correct / max(len(X), 1)
