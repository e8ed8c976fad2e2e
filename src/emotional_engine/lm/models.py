"""`ModelManager`: the configured language models, each loaded on first use, and the one a request gets;
`make_generator`: the generator of one configured model.

A request that names a model (`StoryRequest.model`) gets it; otherwise the first routing rule that
matches its audience and culture picks one; otherwise the catalog's default does. With `max_loaded`,
loading one more model unloads the least recently used other than the default.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Protocol

from emotional_engine.config import EMBEDDED, ModelCatalog, ModelSpec
from emotional_engine.lm.builtin import BuiltinGenerator
from emotional_engine.lm.generator import Generator, ModelInfo
from emotional_engine.lm.llama_cpp import LlamaCppGenerator
from emotional_engine.lm.openai_backend import OpenAIGenerator

if TYPE_CHECKING:
    from emotional_engine.config import Settings

Loader = Callable[[ModelSpec], Generator]
log = logging.getLogger(__name__)


class Routed(Protocol):
    """What routing reads of a request (a `StoryRequest` is one): the model it names, its audience and culture."""

    model: str | None
    audience: str
    culture: str


def make_generator(spec: ModelSpec, settings: Settings) -> Generator:
    """The generator of one configured model, with the prompt style the spec asks for (else the
    backend's); the builtin runtime takes its options from `settings`."""
    generator = _backend(spec, settings)
    if spec.prompt_style is not None:
        generator.info.prompt_style = spec.prompt_style
    return generator


def _backend(spec: ModelSpec, settings: Settings) -> Generator:
    if spec.openai is not None:
        return OpenAIGenerator(spec.openai.base_url, spec.openai.model, spec.openai.key())
    if spec.runtime == "llama-cpp":
        return LlamaCppGenerator.load(spec.gguf)
    return BuiltinGenerator.load(
        spec.gguf,
        weight_format=settings.weight_format,
        max_batch=settings.max_batch,
        cache_budget_mb=settings.kv_cache_budget_mb,
        overflow=settings.context_overflow,
        cache_dir=settings.cache_dir,
        emotion_adapter=settings.emotion_adapter,
        lora_path=settings.register_lora,
    )


class UnknownModelError(ValueError):
    def __init__(self, name: str, available: list[str]):
        self.name, self.available = name, available
        super().__init__(f"no model {name!r} is configured; available: {', '.join(available)}")


@dataclass
class ModelStatus:
    spec: ModelSpec
    default: bool
    rules: list[dict[str, str]]  # the routing rules that pick this model (their audience and culture)
    info: ModelInfo | None  # once loaded


class ModelManager:
    def __init__(self, catalog: ModelCatalog, load: Loader, max_loaded: int | None = None):
        self.catalog = catalog
        self._load = load
        self.max_loaded = max_loaded  # models held at once (None: all); the default is never unloaded
        self._specs = {m.name: m for m in catalog.models}
        self._loaded: OrderedDict[str, Generator] = OrderedDict()  # least recently used first
        self._locks = {name: threading.Lock() for name in self._specs}

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelManager:
        return cls(settings.model_catalog(), partial(make_generator, settings=settings), settings.max_loaded_models)

    @classmethod
    def single(cls, generator: Generator) -> ModelManager:
        """One model, `embedded`, served by `generator` (tests and benchmarks pass their own)."""
        return cls(ModelCatalog(models=[ModelSpec(name=EMBEDDED, builtin=True)]), lambda spec: generator)

    @property
    def default(self) -> str:
        return self.catalog.default

    def spec(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownModelError(name, list(self._specs)) from None

    def choose(self, request: Routed) -> str:
        """The model for `request`: the one it names, else the first matching rule's, else the default."""
        if request.model is not None:
            return self.spec(request.model).name
        for rule in self.catalog.rules:
            if rule.matches(request.audience, request.culture):
                return rule.model
        return self.default

    def is_loaded(self, name: str) -> bool:
        return name in self._loaded

    def get(self, name: str) -> Generator:
        """Model `name`'s generator, loaded on first use (once, however many threads ask at once)."""
        spec = self.spec(name)
        while (generator := self._used(name)) is None:  # again if another load unloaded it meanwhile
            with self._locks[name]:
                if name not in self._loaded:
                    self._loaded[name] = self._load(spec)
                    self._unload_beyond_max(keep=name)
        return generator

    async def aget(self, name: str) -> Generator:
        """`get` without blocking the event loop: a first use loads in a thread."""
        generator = self._used(name)
        return generator if generator is not None else await asyncio.to_thread(self.get, name)

    def _used(self, name: str) -> Generator | None:
        """The loaded generator, now the most recently used; None when it is not loaded."""
        try:
            self._loaded.move_to_end(name)
            return self._loaded[name]
        except KeyError:
            return None

    def _unload_beyond_max(self, keep: str) -> None:
        """Unload the least recently used models beyond `max_loaded` (never `keep` or the default). A request
        still writing with one fails as the model failing (503, retry), and loads it again."""
        while self.max_loaded is not None and len(self._loaded) > max(self.max_loaded, 1):
            name = next((n for n in list(self._loaded) if n not in (keep, self.default)), None)
            if name is None:
                return
            generator = self._loaded.pop(name)
            log.info("model %s unloaded (least recently used of %d)", name, self.max_loaded)
            threading.Thread(target=asyncio.run, args=(generator.aclose(),), name=f"unload-{name}").start()

    def identity(self, name: str) -> dict:
        """What tells a loaded model's output apart from another's (the cache key holds it)."""
        info, spec = self._loaded[name].info, self._specs[name]
        return {
            "name": name,
            "backend": info.backend,
            "model": info.name,
            "sha256": info.sha256,
            "weight_format": info.weight_format,
            "adapter": info.adapter,
            "base_url": spec.openai.base_url if spec.openai else None,
        }

    def describe(self) -> list[ModelStatus]:
        """Every configured model, without loading any."""
        return [
            ModelStatus(
                spec=spec,
                default=name == self.default,
                rules=[
                    r.model_dump(exclude={"model"}, exclude_none=True) for r in self.catalog.rules if r.model == name
                ],
                info=self._loaded[name].info if name in self._loaded else None,
            )
            for name, spec in self._specs.items()
        ]
