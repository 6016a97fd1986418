"""Load NeMo RL recipe YAML files with NeMo RL's own semantics.

NeMo RL's YAML files are not Hydra configs: their ``defaults:`` key names parent *files* (a
string or a list of paths relative to the file that names them), parents merge in order and the
child last, and a top-level section holding ``_override_: true`` replaces the parent's section
instead of merging into it (``nemo_rl/utils/config.py``).

Interpolations use the resolvers ``mul``, ``add``, ``div`` and ``max`` that NeMo RL registers,
plus OmegaConf's ``oc.env``; they stay unresolved until a caller asks, so an override of
``policy.max_total_sequence_length`` still flows into every ``${...}`` that names it.
Command-line overrides use Hydra's grammar on a struct config: an unknown key is refused unless
written ``+key=`` or ``++key=``.

Everything that can go wrong with the files (missing recipe, missing parent, a ``defaults:``
cycle, unreadable YAML, an unknown override key) is a one-line :class:`SweepConfigError` naming
the file or key, so a sweep refuses before any job starts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

from omegaconf import DictConfig, ListConfig, OmegaConf

from nemo_rl_sweep.errors import SweepConfigError

__all__ = [
    "apply_overrides",
    "key_exists",
    "load_recipe",
    "missing_keys",
    "register_resolvers",
]

_OVERRIDE_MARKER = "_override_"


def register_resolvers() -> None:
    """Register NeMo RL's interpolation resolvers, leaving any already registered in place.

    NeMo RL registers the same names in ``register_omegaconf_resolvers``; registering only when
    absent means this module can run next to NeMo RL (or the embedded trainer) in one process.
    """
    resolvers = {
        "add": lambda a, b: a + b,
        "mul": lambda a, b: a * b,
        "div": lambda a, b: a / b,
        "max": lambda a, b: max(a, b),
    }
    for name, fn in resolvers.items():
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, fn)


def _read_yaml(path: Path, named_by: Path | None) -> DictConfig:
    """Read one YAML file as a mapping, refusing missing or malformed files with one line."""
    if not path.is_file():
        if named_by is None:
            raise SweepConfigError(
                str(path),
                "recipe file does not exist",
                "give the path of a NeMo RL YAML, e.g. <RL>/examples/configs/grpo_math_1B.yaml",
            )
        raise SweepConfigError(
            str(path),
            f"parent config named in `defaults:` of {named_by} does not exist",
            f"correct the `defaults:` entry in {named_by} (paths are relative to that file)",
        )
    try:
        loaded = OmegaConf.load(path)
    except Exception as exc:  # yaml.YAMLError and OmegaConf grammar errors alike
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SweepConfigError(
            str(path), f"is not valid YAML ({first_line})", "fix the YAML syntax"
        ) from exc
    if not isinstance(loaded, DictConfig):
        raise SweepConfigError(
            str(path),
            "top level is a list, not a mapping",
            "a NeMo RL config must be a mapping of sections",
        )
    return loaded


def _parent_paths(config: DictConfig, path: Path) -> list[Path]:
    """The parent files a config names in ``defaults:``, resolved against the file's folder."""
    defaults = config.pop("defaults")
    if isinstance(defaults, str):
        entries = [defaults]
    elif isinstance(defaults, ListConfig):
        entries = [str(d) for d in defaults]
    else:
        raise SweepConfigError(
            f"{path}: defaults",
            f"must be a file path or a list of file paths, got {type(defaults).__name__}",
            "write `defaults: parent.yaml` or `defaults: [a.yaml, b.yaml]`",
        )
    base = path.parent
    return [Path(e) if e.startswith("/") else base / e for e in entries]


def _merge_with_override(base: DictConfig, child: DictConfig) -> DictConfig:
    """Merge ``child`` into ``base``; a top-level child section marked ``_override_`` replaces.

    As in NeMo RL, only top-level sections are checked for the marker; the marker is removed.
    """
    for key in list(child.keys()):
        if OmegaConf.is_missing(child, key):
            continue
        section = child[key]
        if isinstance(section, DictConfig) and section.get(_OVERRIDE_MARKER, False):
            section.pop(_OVERRIDE_MARKER)
            if key in base:
                base.pop(key)
    merged = OmegaConf.merge(base, child)
    assert isinstance(merged, DictConfig)
    return merged


def _load(path: Path, chain: tuple[Path, ...], named_by: Path | None) -> DictConfig:
    """Load ``path`` and its ancestors depth-first; ``chain`` holds the files being loaded."""
    key = path.resolve()
    if key in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(key) :], key))
        raise SweepConfigError(
            str(path),
            f"`defaults:` cycle: {cycle}",
            "remove one of these `defaults:` entries so inheritance ends at a file without one",
        )
    config = _read_yaml(path, named_by)
    if "defaults" not in config:
        return config
    chain = (*chain, key)
    base = OmegaConf.create({})
    for parent in _parent_paths(config, path):
        base = _merge_with_override(base, _load(parent, chain, path))
    return _merge_with_override(base, config)


def load_recipe(path: str | Path) -> DictConfig:
    """Load a NeMo RL recipe file with its ``defaults:`` inheritance applied.

    Returns the merged config with ``defaults`` removed and interpolations unresolved (resolve
    with ``OmegaConf.to_container(cfg, resolve=True)`` once overrides are applied, as NeMo RL's
    scripts do). NeMo RL's resolvers are registered on the way, so that resolution works here.

    Raises :class:`SweepConfigError` for a missing recipe, a missing parent, a ``defaults:`` cycle
    or a file that is not a YAML mapping.
    """
    register_resolvers()
    return _load(Path(path), (), None)


def _override_key(text: str) -> str:
    """The key part of an override string, for error messages."""
    return text.split("=", 1)[0].lstrip("+~")


def apply_overrides(cfg: DictConfig, overrides: Sequence[str]) -> DictConfig:
    """Apply Hydra-grammar overrides to ``cfg`` in place, as NeMo RL's scripts do.

    ``cfg`` is put in struct mode first, so ``a.b=1`` on a key the config lacks is refused and
    ``+a.b=1`` / ``++a.b=1`` add it; ``~a.b`` deletes. Values are parsed by Hydra's grammar
    (``1e-6`` is a float, ``[1,2]`` a list, ``null`` None). Sweep syntax (``choice(...)``) is
    not a single value and is refused. Returns ``cfg``.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser

    overrides = list(overrides)
    OmegaConf.set_struct(cfg, True)
    parser = OverridesParser.create()
    for text in overrides:
        try:
            parsed = parser.parse_overrides(overrides=[text])
        except Exception as exc:
            raise SweepConfigError(
                _override_key(text),
                f"override {text!r} is not valid Hydra syntax ({_first_line(exc)})",
                "write key=value, +key=value to add a key, ~key to delete one",
            ) from exc
        override = parsed[0]
        if override.is_sweep_override():
            raise SweepConfigError(
                override.key_or_group,
                f"override {text!r} is a sweep, not a single value",
                "give one value here; put sweeps in hydra.sweeper.params or on the --multirun line",
            )
        try:
            ConfigLoaderImpl._apply_overrides_to_config(overrides=parsed, cfg=cfg)
        except Exception as exc:
            key = override.key_or_group
            if override.is_add() or override.is_force_add() or key_exists(cfg, key):
                problem = f"override {text!r} failed ({_first_line(exc)})"
                fix = "check the value's type against the recipe"
            else:
                problem = "key is not in the recipe"
                fix = f"check the spelling against the recipe, or write +{key}=... to add it"
            raise SweepConfigError(key, problem, fix) from exc
    return cfg


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def key_exists(cfg: DictConfig | ListConfig, key: str) -> bool:
    """Whether a dotted key path (``policy.optimizer.kwargs.lr``, ``policy.scheduler.0``) exists.

    Unlike ``OmegaConf.select`` this neither resolves interpolations nor confuses a key holding
    ``null`` or ``???`` with a missing key.
    """
    node: object = cfg
    for part in key.split("."):
        if isinstance(node, DictConfig):
            if part not in node:
                return False
            node = node._get_node(part)
        elif isinstance(node, ListConfig):
            if not part.lstrip("-").isdigit() or not -len(node) <= int(part) < len(node):
                return False
            node = node._get_node(int(part))
        else:
            return False
    return True


def missing_keys(cfg: DictConfig, keys: Iterable[str]) -> list[str]:
    """The keys (dotted paths, leading ``+`` ignored as Hydra does) that ``cfg`` lacks, in order.

    Keys written with a leading ``+`` are additions and never reported.
    """
    return [k for k in keys if not k.startswith("+") and not key_exists(cfg, k)]
