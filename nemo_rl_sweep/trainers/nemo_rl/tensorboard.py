"""Read scalars from the TensorBoard event files a NeMo RL run writes, while it writes them.

NeMo RL's TensorBoard logger writes to ``<logger.log_dir>/exp_NNN/tensorboard/`` (a new
``exp_NNN`` per launch, so a resumed run adds a folder) through ``SummaryWriter.add_scalar``;
``add_hparams`` adds event files in sub-folders. This reader follows all of them incrementally:
each poll reads only the bytes added since the last one and stops before a record that is still
being written, so it can run next to the training process. It needs no TensorFlow; records are
parsed with the protobuf classes that ship with the ``tensorboard`` package.

Scalars stored either as ``simple_value`` (``SummaryWriter``) or as one-element numeric tensors
(TF2-style summaries) are read. When a step is written twice (a resumed run repeats a step) the
later value wins.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["EventFileFollower", "ScalarLog", "read_scalars"]

_EXP_DIR = re.compile(r"exp_(\d+)$")
_HEADER = 12  # uint64 length + uint32 masked CRC of the length
_FOOTER = 4  # uint32 masked CRC of the data


@dataclass
class EventFileFollower:
    """Reads the complete records appended to one event file since the last call."""

    path: Path
    offset: int = 0
    corrupt: bool = False

    def read_new(self) -> list[bytes]:
        """Serialized ``Event`` records appended since the last call (a partial tail is left)."""
        if self.corrupt:
            return []
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

        records: list[bytes] = []
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return records
        pos = 0
        while len(data) - pos >= _HEADER:
            header = data[pos : pos + 8]
            (length,) = struct.unpack("<Q", header)
            (length_crc,) = struct.unpack("<I", data[pos + 8 : pos + 12])
            if masked_crc32c(header) != length_crc:
                # Bytes are appended in order, so a complete header with a bad checksum is
                # damage we cannot step over: stop following this file.
                self.corrupt = True
                break
            end = pos + _HEADER + length + _FOOTER
            if end > len(data):
                break  # the writer has not finished this record yet
            records.append(data[pos + _HEADER : pos + _HEADER + length])
            pos = end
        self.offset += pos
        return records


def _scalar_values(record: bytes) -> list[tuple[str, int, float]]:
    """(tag, step, value) for every scalar summary value in one serialized ``Event``."""
    from tensorboard.compat.proto import event_pb2

    event = event_pb2.Event.FromString(record)
    if not event.HasField("summary"):
        return []
    out: list[tuple[str, int, float]] = []
    for value in event.summary.value:
        kind = value.WhichOneof("value")
        if kind == "simple_value":
            out.append((value.tag, int(event.step), float(value.simple_value)))
        elif kind == "tensor":
            number = _tensor_scalar(value.tensor)
            if number is not None:
                out.append((value.tag, int(event.step), number))
    return out


def _tensor_scalar(tensor: object) -> float | None:
    """The number held by a one-element numeric tensor proto, or None for anything else."""
    from tensorboard.util import tensor_util

    try:
        array = tensor_util.make_ndarray(tensor)
    except Exception:
        return None
    if array.size != 1 or array.dtype.kind not in "biuf":
        return None
    return float(array.reshape(-1)[0])


def _exp_number(folder: Path) -> int:
    match = _EXP_DIR.search(folder.name)
    return int(match.group(1)) if match else -1


@dataclass
class ScalarLog:
    """All scalar tags under a NeMo RL ``logger.log_dir``, kept up to date by :meth:`poll`.

    ``log_dir`` is the run's ``logger.log_dir`` (the folder holding ``exp_NNN``). Experiments are
    read in ``exp`` order, so a later launch's value for a step replaces an earlier one.
    """

    log_dir: Path
    _followers: dict[Path, EventFileFollower] = field(default_factory=dict)
    _values: dict[str, dict[int, float]] = field(default_factory=dict)

    def _event_files(self) -> list[Path]:
        if not self.log_dir.is_dir():
            return []
        exps = [p for p in self.log_dir.iterdir() if p.is_dir() and _EXP_DIR.search(p.name)]
        files: list[Path] = []
        for exp in sorted(exps, key=_exp_number):
            board = exp / "tensorboard"
            if board.is_dir():
                files.extend(sorted(board.rglob("events.out.tfevents*")))
        return files

    def poll(self) -> list[tuple[str, int, float]]:
        """Read what was appended since the last poll; returns the new (tag, step, value)."""
        new: list[tuple[str, int, float]] = []
        for path in self._event_files():
            follower = self._followers.setdefault(path, EventFileFollower(path))
            for record in follower.read_new():
                for tag, step, value in _scalar_values(record):
                    self._values.setdefault(tag, {})[step] = value
                    new.append((tag, step, value))
        return new

    def tags(self) -> list[str]:
        """Every scalar tag seen so far, sorted."""
        return sorted(self._values)

    def series(self, tag: str) -> list[tuple[int, float]]:
        """(step, value) of one tag in step order; empty if the tag was never written."""
        return sorted(self._values.get(tag, {}).items())

    def at_step(self, step: int, prefix: str = "") -> dict[str, float]:
        """Every tag starting with ``prefix`` that has a value at ``step``."""
        return {
            tag: steps[step]
            for tag, steps in self._values.items()
            if tag.startswith(prefix) and step in steps
        }

    def last_values(self) -> dict[str, float]:
        """The value at the highest step of every tag."""
        return {tag: steps[max(steps)] for tag, steps in self._values.items() if steps}


def read_scalars(log_dir: str | Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of ``tag`` from all event files under ``log_dir/exp_*/tensorboard/``."""
    log = ScalarLog(Path(log_dir))
    log.poll()
    return log.series(tag)
