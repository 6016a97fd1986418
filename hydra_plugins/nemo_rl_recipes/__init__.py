"""Hydra glue that serves NeMo RL's own YAML files as the ``recipe`` config group.

With ``hydra.searchpath=[nemorl:///path/to/RL/examples/configs]`` (or ``NEMO_RL_DIR`` exported,
which adds ``nemorl://$NEMO_RL_DIR/examples/configs``), ``recipe=grpo_math_1B`` or
``recipe=recipes/llm/grpo-llama3.2-1b-instruct-1n4g-fsdp2tp1.v3`` composes that NeMo RL file
(``recipe=/abs/path/my_recipe.yaml`` works always),
with NeMo RL's ``defaults:`` inheritance applied, at the root of the trial config. Hydra then
checks every override and search-space key against the recipe's own keys (``+key`` adds).

Kept small: Hydra imports this module at start-up to scan for plugins.
"""

from __future__ import annotations

import os
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.object_type import ObjectType
from hydra.errors import CompactHydraException
from hydra.plugins.config_source import ConfigLoadError, ConfigResult, ConfigSource
from hydra.plugins.search_path_plugin import SearchPathPlugin

GROUP = "recipe"
SCHEME = "nemorl"
ENV_VAR = "NEMO_RL_DIR"


def _register_resolvers() -> None:
    """NeMo RL's ``mul``/``add``/``div``/``max`` resolvers, so a composed recipe can resolve."""
    from nemo_rl_sweep.trainers.nemo_rl.config import register_resolvers

    register_resolvers()


class RecipeLoadError(ConfigLoadError, CompactHydraException):
    """A NeMo RL recipe that cannot be loaded (missing parent, ``defaults:`` cycle, bad YAML)."""


class NeMoRLRecipeSource(ConfigSource):
    """A folder of NeMo RL YAML files presented as the config group ``recipe``.

    Every ``*.yaml`` under the folder (recursively) is an option named by its path relative to the
    folder, without ``.yaml``; an absolute path (``recipe=/home/me/my_recipe.yaml``) names any
    file. Each is loaded with NeMo RL's semantics and packaged ``_global_``, so its key paths are
    the trial config's key paths. ``nemorl://`` with no folder serves absolute paths only.
    """

    @staticmethod
    def scheme() -> str:
        return SCHEME

    def _root(self) -> Path:
        return Path(self.path)

    def _absolute_only(self) -> bool:
        return self.path == ""

    def _relative(self, config_path: str) -> str | None:
        """The part of ``config_path`` under the ``recipe`` group, or None if outside it."""
        config_path = config_path.strip("/")
        if config_path == GROUP:
            return ""
        if config_path.startswith(GROUP + "/"):
            return config_path[len(GROUP) + 1 :]
        return None

    def _file(self, config_path: str) -> Path | None:
        rel = self._relative(config_path)
        if not rel or (self._absolute_only() and not rel.startswith("/")):
            return None
        return self._root() / self._normalize_file_name(rel)

    def load_config(self, config_path: str) -> ConfigResult:
        from nemo_rl_sweep.errors import SweepConfigError
        from nemo_rl_sweep.trainers.nemo_rl.config import load_recipe

        path = self._file(config_path)
        if path is None or not path.is_file():
            raise ConfigLoadError(f"NeMo RL recipe not found: {path or config_path}")
        try:
            cfg = load_recipe(path)
        except SweepConfigError as exc:
            # compact: Hydra prints the one-line message, not a traceback
            raise RecipeLoadError(str(exc)) from None
        return ConfigResult(
            config=cfg,
            path=f"{self.scheme()}://{self.path}",
            provider=self.provider,
            header={"package": "_global_"},
        )

    def available(self) -> bool:
        return self._absolute_only() or self._root().is_dir()

    def is_group(self, config_path: str) -> bool:
        rel = self._relative(config_path)
        if self._absolute_only():
            return False
        if config_path.strip("/") == "":
            return self.available()
        return rel is not None and (self._root() / rel).is_dir()

    def is_config(self, config_path: str) -> bool:
        path = self._file(config_path)
        return path is not None and path.is_file()

    def list(self, config_path: str, results_filter: ObjectType | None) -> list[str]:
        names: set[str] = set()
        if self._absolute_only():
            return []
        if config_path.strip("/") == "":
            if self.available() and results_filter in (None, ObjectType.GROUP):
                names.add(GROUP)
            return sorted(names)
        rel = self._relative(config_path)
        folder = self._root() / rel if rel is not None else None
        if folder is None or not folder.is_dir():
            return []
        for entry in folder.iterdir():
            if entry.is_dir() and results_filter in (None, ObjectType.GROUP):
                names.add(entry.name)
            if entry.suffix == ".yaml" and entry.is_file():
                if results_filter in (None, ObjectType.CONFIG):
                    names.add(entry.stem)
        return sorted(names)


class NeMoRLSearchPath(SearchPathPlugin):
    """Adds ``nemorl://$NEMO_RL_DIR/examples/configs`` when ``NEMO_RL_DIR`` names a checkout, and
    always ``nemorl://`` so that ``recipe=/absolute/path/to/recipe.yaml`` works anywhere."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        _register_resolvers()
        checkout = os.environ.get(ENV_VAR)
        if checkout:
            folder = Path(checkout).expanduser().resolve() / "examples" / "configs"
            search_path.append(provider="nemo-rl-recipes", path=f"{SCHEME}://{folder}")
        search_path.append(provider="nemo-rl-recipe-paths", path=f"{SCHEME}://")
