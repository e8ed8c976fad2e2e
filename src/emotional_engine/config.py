"""Settings, from EE_* environment variables (or a .env file); tests override `get_settings`.

The language models a server can use are a `ModelCatalog`: EE_MODELS (JSON) or EE_MODELS_FILE
(YAML), else the single model the EE_MODEL_PATH / EE_OPENAI_* settings describe.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EMBEDDED = "embedded"  # the catalog's one model when nothing is configured: the embedded SmolLM2


class OpenAIServer(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_url: str = Field(description="server root, e.g. http://127.0.0.1:8001 (a trailing /v1 is accepted)")
    model: str = Field("default", description="the model name the server knows")
    api_key_env: str | None = Field(None, description="environment variable holding the API key")
    api_key: SecretStr | None = Field(None, description="the key itself (prefer api_key_env: keys stay out of files)")

    def key(self) -> str | None:
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        return os.environ.get(self.api_key_env) if self.api_key_env else None


class ModelSpec(BaseModel):
    """One configured model: a name and exactly one of `builtin`, `gguf`, `openai`."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    builtin: bool = Field(False, description="the embedded SmolLM2-135M-Instruct")
    gguf: Path | None = Field(None, description="a llama GGUF file")
    runtime: Literal["builtin", "llama-cpp"] = Field("builtin", description="what runs a gguf file")
    openai: OpenAIServer | None = Field(None, description="an OpenAI-compatible server")
    prompt_style: Literal["continuation", "task"] | None = Field(
        None,
        description="how stories prompt the model: continuation (the reply begun with the story so far; "
        "the default for builtin and llama-cpp) or task (a request to write the scene; the default for "
        "openai servers, which continue a reply only where they support vLLM's continue_final_message)",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelSpec:
        given = [k for k in ("builtin", "gguf", "openai") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                f"model {self.name!r} needs exactly one of builtin, gguf, openai (got {', '.join(given) or 'none'})"
            )
        if self.runtime == "llama-cpp" and self.gguf is None:
            raise ValueError(f"model {self.name!r}: runtime llama-cpp needs a gguf file")
        if self.gguf is not None and not self.gguf.is_file():
            raise ValueError(f"model {self.name!r}: GGUF file {self.gguf} does not exist")
        return self

    @property
    def backend(self) -> str:
        if self.openai is not None:
            return "openai"
        return "llama-cpp" if self.runtime == "llama-cpp" else "builtin"


class RoutingRule(BaseModel):
    """Requests whose audience and culture match go to `model`; a culture is an exact tag (en-GB)
    or a language (en: every en-* tag)."""

    model_config = ConfigDict(extra="forbid")

    model: str
    audience: Literal["children", "teen", "adult"] | None = None
    culture: str | None = None

    @model_validator(mode="after")
    def _matches_something(self) -> RoutingRule:
        if self.audience is None and self.culture is None:
            raise ValueError(f"a rule for model {self.model!r} needs an audience, a culture or both")
        return self

    def matches(self, audience: str, culture: str) -> bool:
        if self.audience is not None and audience != self.audience:
            return False
        if self.culture is None:
            return True
        want, tag = self.culture.lower(), culture.lower()
        return tag == want or ("-" not in want and tag.split("-")[0] == want)


class ModelCatalog(BaseModel):
    """The configured models, the default (the first model unless named) and the routing rules,
    tried in order."""

    model_config = ConfigDict(extra="forbid")

    models: list[ModelSpec] = Field(min_length=1)
    default: str | None = None
    rules: list[RoutingRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _names_resolve(self) -> ModelCatalog:
        names = [m.name for m in self.models]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        self.default = self.default or names[0]
        for what, name in [("default", self.default), *(("a rule", r.model) for r in self.rules)]:
            if name not in names:
                raise ValueError(f"{what} names model {name!r}, which is not configured (models: {', '.join(names)})")
        return self


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EE_", env_file=".env", extra="ignore")

    # Language model
    model_path: Path | None = Field(None, description="GGUF file; default: the embedded SmolLM2-135M-Instruct")
    weight_format: Literal["native", "fp32", "fp16", "q8_0", "q4_0", "q4_1", "q4_k", "q5_k", "q6_k"] = Field(
        "native",
        description="CPU weight format of the builtin decoder (native: the file's blocks, C++ kernels; q8_0 ... "
        "q6_k: requantised to that block format at load, for comparing formats)",
    )
    max_batch: int = Field(16, ge=1, le=256, description="sequences decoded together per step")
    kv_cache_budget_mb: int = Field(512, ge=1, description="memory for all KV caches, running and kept")
    context_overflow: Literal["truncate", "error"] = Field("truncate", description="prompt longer than the context")
    cache_dir: Path | None = Field(None, description="dequantised-weight cache; default ~/.cache/emotional-engine")
    logit_steering: bool = Field(True, description="bias the builtin model's logits towards each scene's emotion")
    emotion_adapter: bool = Field(
        False,
        description="attach the shipped emotion-attention adapter to the embedded model; off by default: in the "
        "90-scene control benchmark it added no emotion control (docs/benchmarks.md)",
    )
    register_lora: Path | None = Field(
        None, description="a LoRA file (emotional-engine train register-lora) merged into the builtin model's weights"
    )
    # OpenAI-compatible backend (vLLM, Ollama, llama.cpp server); used when base_url is set
    openai_base_url: str | None = None
    openai_api_key: SecretStr | None = None
    openai_model: str | None = None
    # Several models (see ModelCatalog); either replaces the single model above
    models: ModelCatalog | None = Field(None, description="the model catalog as JSON")
    models_file: Path | None = Field(None, description="the model catalog as a YAML file")
    max_loaded_models: int | None = Field(
        None,
        ge=1,
        description="models a process holds at once; the least recently used other than the default "
        "is unloaded for one more (default: all that are used)",
    )
    # Storage and cache (the HTTP service)
    # URLs may carry a password: kept out of reprs (repr=False) and logged redacted (`redacted_url`)
    database_url: str | None = Field(
        None,
        repr=False,
        description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; "
        "default: a SQLite file engine.db in cache_dir or ~/.local/share/emotional-engine",
    )
    redis_url: str | None = Field(
        None, repr=False, description="redis://host:6379/0 for the shared cache level; None: in-process only"
    )
    cache_l1_size: int = Field(1024, ge=1, description="entries in the in-process cache")
    cache_ttl_s: int = Field(3600, ge=1, description="time to live of cached stories and beats, every level")
    cache_l3_max_rows: int = Field(10_000, ge=1, description="rows of the SQL cache level before the oldest go")
    session_idle_ttl_s: int = Field(1800, ge=1, description="an interactive session expires after this long idle")
    # HTTP service (`emotional-engine serve`)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    auth_enabled: bool = Field(True, description="false only for local development; the server warns at start")
    auth_off_on_public_address: bool = Field(
        False, description="let `serve` run without authentication on an address other than loopback"
    )
    rate_limit_requests_per_min: int = Field(120, ge=1, description="per API key")
    rate_limit_tokens_per_min: int = Field(20000, ge=1, description="generated tokens per API key")
    max_body_bytes: int = Field(64_000, ge=1024, description="largest request body accepted")
    max_concurrent_per_key: int = Field(4, ge=1, description="generations one key may run at once")
    auth_failures_per_min: int = Field(30, ge=1, description="bad or missing keys per client address, then 429")
    max_jobs_per_key: int = Field(8, ge=1, description="unfinished jobs one key may have (more get 429)")
    max_sessions_per_key: int = Field(16, ge=1, description="live interactive sessions one key may have (more: 429)")
    generation_slots: int = Field(16, ge=1, description="generations running at once (the LM batches them)")
    generation_queue: int = Field(64, ge=0, description="generations waiting for a slot before 503s")
    generation_max_wait_s: float = Field(10.0, gt=0, description="a request waits this long for a slot, then 503")
    job_slots: int | None = Field(
        None, ge=1, description="generation slots jobs may hold at once (default: half); the rest stay free for beats"
    )
    job_words_threshold: int = Field(1500, ge=50, description="stories longer than this run as jobs (202)")
    job_lease_s: float = Field(
        30.0,
        gt=0,
        description="a worker renews its hold on a job this often x3; a dead worker's job is taken over after it",
    )
    agent_timeout_s: float = Field(
        30.0, gt=0, description="an agent (character, technical, memory) taking longer is skipped and named degraded"
    )
    session_turns: int = Field(12, ge=2, le=500, description="turns a session's arc is spread over")

    def model_catalog(self) -> ModelCatalog:
        """EE_MODELS, else EE_MODELS_FILE, else one model from the single-model settings: `embedded`,
        `gguf` (EE_MODEL_PATH) or `openai` (EE_OPENAI_BASE_URL)."""
        if self.models is not None:
            return self.models
        if self.models_file is not None:
            try:
                return ModelCatalog.model_validate(yaml.safe_load(self.models_file.read_text(encoding="utf-8")))
            except ValidationError as e:
                problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
                raise ValueError(f"models file {self.models_file}: {problems}") from None
            except (OSError, yaml.YAMLError) as e:
                raise ValueError(f"models file {self.models_file}: {e}") from None
        if self.openai_base_url:
            server = OpenAIServer(
                base_url=self.openai_base_url, model=self.openai_model or "default", api_key=self.openai_api_key
            )
            return ModelCatalog(models=[ModelSpec(name="openai", openai=server)])
        if self.model_path is not None:
            return ModelCatalog(models=[ModelSpec(name="gguf", gguf=self.model_path)])
        return ModelCatalog(models=[ModelSpec(name=EMBEDDED, builtin=True)])


@lru_cache
def get_settings() -> Settings:
    return Settings()


def redacted_url(url: str) -> str:
    """`url` with any password replaced by ***, for logs and messages."""
    return re.sub(r"(//[^/@:]*:)[^/@]*@", r"\1***@", url)
