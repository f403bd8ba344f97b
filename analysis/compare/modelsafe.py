"""The fitted parts of a model file, written and read back without running code from the file.

A model file travels between labs, so reading one must not run whatever it
holds, as unpickling does. The fitted parts (feature transformer, scaler,
classifier) are written in skops' format (https://skops.readthedocs.io), whose
loader rebuilds objects from a JSON schema and plain arrays and refuses any
type not on the list it is given. That list is :func:`trusted_types`: the
classifiers a grids file may name (:data:`echolab.analysis.compare.grids.ALLOWED_ESTIMATORS`),
echolab's feature transformers, the standard scaler, and the few scikit-learn
internals those hold (decision trees' ``Tree``, the neighbour searches' trees
and distance metrics, the MLP's optimizers). A Python function (a ``PyFunc``
distance, for one) is never on it.

Why skops and not arrays rebuilt by hand: it covers every fitted attribute of
scikit-learn's estimators (forest trees included) with a loader maintained for
exactly this purpose, and echolab's own transformers hold only lists, dicts
and arrays, which it rebuilds as data. See docs/security.md.
"""

from __future__ import annotations

import struct
import zipfile
from pathlib import Path
from typing import Any

from echolab.errors import EcholabError

#: echolab's feature transformers (``echolab.analysis.features``), by module and class.
TRANSFORMERS = (
    "echolab.analysis.features.transformers.TcptraceFeatures",
    "echolab.analysis.features.transformers.HistogramFeatures",
    "echolab.analysis.features.transformers.CombinedFeatures",
    "echolab.analysis.features.sequence.SequenceFeatures",
    "echolab.analysis.features.kfp.KfpFeatures",
    "echolab.analysis.features.cumul.CumulFeatures",
    "echolab.analysis.features.flow.FlowFeatures",
)
SCALER = "sklearn.preprocessing._data.StandardScaler"

#: scikit-learn internals that the allowed classifiers hold once fitted.
INTERNALS = (
    "sklearn.tree._tree.Tree",
    "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.neighbors._ball_tree.BallTree",
    "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
    # the reject option's probability calibration (analysis.compare.openeval: CalibratedClassifierCV, sigmoid)
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    *(f"sklearn.metrics._dist_metrics.{name}Distance{bits}"
      for name in ("Euclidean", "Manhattan", "Chebyshev", "Minkowski", "Hamming") for bits in (32, 64)),
)


class ModelSafetyError(EcholabError):
    """A model's parts hold a type that echolab does not load from a file."""


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def trusted_types() -> list[str]:
    """Every type a model file may hold beyond plain data (skops' names: ``module.Class``)."""
    from echolab.analysis.compare.grids import ALLOWED_ESTIMATORS, estimator_class

    estimators = []
    for path in ALLOWED_ESTIMATORS:
        try:
            estimators.append(_type_name(estimator_class(path)))
        except EcholabError:  # an optional install that is missing: its models cannot be here
            continue
    return sorted({*estimators, *TRANSFORMERS, SCALER, *INTERNALS})


def dump_objects(objects: dict[str, Any]) -> bytes:
    """*objects* in skops' format; :class:`ModelSafetyError` when one holds a type :func:`load_objects` refuses."""
    import skops.io as sio

    try:
        blob = sio.dumps(objects, compression=zipfile.ZIP_DEFLATED)
    except Exception as exc:  # skops raises what the object's own state raises
        raise ModelSafetyError(f"cannot write the model's parts ({type(exc).__name__}: {exc})") from exc
    untrusted = sorted(set(sio.get_untrusted_types(data=blob)) - set(trusted_types()))
    if untrusted:
        raise ModelSafetyError(f"the model holds {', '.join(untrusted)}, which a model file may not hold "
                               "(see docs/security.md)")
    return blob


#: The most a model's parts may take once unpacked (skops' members, as its zip declares them), and the most
#: members: a model file is inflated in memory, so a small file that would unpack to gigabytes (a deflate
#: bomb) is refused before anything is read. Echolab's largest models (400-tree forests) unpack to tens of MB.
MAX_UNPACKED_BYTES = 1024**3
MAX_MEMBERS = 65_535
#: The most bytes of a zip's central directory (the list of its members) read: Python's zip reader makes an
#: object of every entry there (about 570 bytes of memory for a 46-byte entry) before anything else can be
#: checked. A real model's directory is a few hundred KB.
MAX_DIRECTORY_BYTES = 8 * 1024 * 1024
_END = b"PK\x05\x06"  # the end of central directory record
_ZIP64_LOCATOR = b"PK\x06\x07"
_END_SEARCH = 22 + 65_535  # the end record and the longest comment after it


def check_zip_directory(tail: bytes, where: str) -> None:
    """Refuse a zip whose end record (in *tail*, its last bytes) lists more than a model's members.

    Read before the zip is opened, so a crafted directory of millions of tiny
    entries costs nothing; a zip64 archive (which no model file needs) is refused
    too, since its directory's size would be read from elsewhere. Nothing is
    said of bytes without an end record: the zip reader refuses those itself.
    """
    at = tail.rfind(_END)
    if at < 0 or len(tail) - at < 22:
        return
    entries, size = struct.unpack_from("<HI", tail, at + 10)  # total entries, directory size
    if tail[max(at - 20, 0):at - 16] == _ZIP64_LOCATOR or entries == 0xFFFF or size == 0xFFFFFFFF:
        raise ModelSafetyError(f"{where} is a zip64 archive, which no echolab model file is")
    if size > MAX_DIRECTORY_BYTES:
        raise ModelSafetyError(f"{where} lists {size:,} bytes of members, over the limit of "
                               f"{MAX_DIRECTORY_BYTES:,}")


def file_tail(path: Path | str) -> bytes:
    """The last bytes of the file at *path* where a zip's end record may be."""
    with open(path, "rb") as fh:
        fh.seek(0, 2)
        fh.seek(max(fh.tell() - _END_SEARCH, 0))
        return fh.read()


def check_unpacked_size(blob: bytes, where: str = "the model file") -> None:
    """Refuse a skops blob whose members would unpack past :data:`MAX_UNPACKED_BYTES` bytes."""
    import io

    check_zip_directory(blob[-_END_SEARCH:], f"{where}: its model")
    try:
        with zipfile.ZipFile(io.BytesIO(blob)) as zf:
            infos = zf.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError, NotImplementedError) as exc:
        raise ModelSafetyError(f"{where}: its model is damaged ({type(exc).__name__}: {exc})") from None
    if len(infos) > MAX_MEMBERS:
        raise ModelSafetyError(f"{where}: its model has {len(infos)} parts, over the limit of {MAX_MEMBERS}")
    total = sum(i.file_size for i in infos)
    if total > MAX_UNPACKED_BYTES:
        raise ModelSafetyError(f"{where}: its model would unpack to {total:,} bytes, over the limit of "
                               f"{MAX_UNPACKED_BYTES:,} (from {len(blob):,} bytes in the file)")


def load_objects(blob: bytes, where: str = "the model file") -> dict[str, Any]:
    """The parts written by :func:`dump_objects`, rebuilt from data only (trusted types, no pickle).

    The blob's declared unpacked size is checked first (:func:`check_unpacked_size`); zip's reader never
    inflates a member past its declared size, so that bounds the memory a file can make echolab take.
    """
    import warnings

    import skops.io as sio

    check_unpacked_size(blob, where)
    trusted = trusted_types()
    try:
        untrusted = sorted(set(sio.get_untrusted_types(data=blob)) - set(trusted))
    except Exception as exc:
        raise ModelSafetyError(f"{where}: its model is damaged ({type(exc).__name__}: {exc})") from None
    if untrusted:
        raise ModelSafetyError(f"{where} holds {', '.join(untrusted[:5])}, which echolab does not load from a "
                               "file (only the classifiers of the grids allow-list and echolab's transformers; "
                               "see docs/security.md)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scikit-learn's own version warning: the header's check says it once
            objects = sio.loads(blob, trusted=trusted)
    except Exception as exc:  # skops raises many kinds for a damaged file
        raise ModelSafetyError(f"{where}: cannot load its model ({type(exc).__name__}: {exc})") from None
    if not isinstance(objects, dict) or set(objects) != {"transformer", "scaler", "estimator"}:
        raise ModelSafetyError(f"{where} is not an echolab model file (its model is not a transformer, scaler "
                               "and classifier)")
    return objects


__all__ = ["INTERNALS", "ModelSafetyError", "SCALER", "TRANSFORMERS", "dump_objects", "load_objects",
           "trusted_types"]
