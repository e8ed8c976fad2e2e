"""Settings, from EE_* environment variables (or a .env file); tests override `get_settings`."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EE_", env_file=".env", extra="ignore")

    # Language model
    model_path: Path | None = Field(None, description="GGUF file; default: the embedded SmolLM2-135M-Instruct")
    weight_format: Literal["fp32", "fp16"] = Field("fp16", description="CPU weight format of the builtin decoder")
    max_batch: int = Field(16, ge=1, le=256, description="sequences decoded together per step")
    kv_cache_budget_mb: int = Field(512, ge=1, description="memory for all sessions' KV caches")
    context_overflow: Literal["truncate", "error"] = Field("truncate", description="prompt longer than the context")
    cache_dir: Path | None = Field(None, description="dequantised-weight cache; default ~/.cache/emotional-engine")
    logit_steering: bool = Field(True, description="bias the builtin model's logits towards each scene's emotion")
    emotion_adapter: bool = Field(True, description="use the shipped emotion-attention adapter with the embedded model")
    # OpenAI-compatible backend (vLLM, Ollama, llama.cpp server); used when base_url is set
    openai_base_url: str | None = None
    openai_api_key: str | None = None
    openai_model: str | None = None
    # Storage and cache (the HTTP service)
    database_url: str | None = Field(None, description="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db; "
                                     "default: a SQLite file engine.db in cache_dir or ~/.local/share/emotional-engine")
    redis_url: str | None = Field(None, description="redis://host:6379/0 for the shared cache level; None: in-process only")
    cache_l1_size: int = Field(1024, ge=1, description="entries in the in-process cache")
    cache_ttl_s: int = Field(3600, ge=1, description="time to live of cached stories and beats, every level")
    cache_l3_max_rows: int = Field(10_000, ge=1, description="rows of the SQL cache level before the oldest go")
    session_idle_ttl_s: int = Field(1800, ge=1, description="an interactive session expires after this long idle")
    # HTTP service (`emotional-engine serve`)
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    auth_enabled: bool = Field(True, description="false only for local development; the server warns at start")
    rate_limit_requests_per_min: int = Field(120, ge=1, description="per API key")
    rate_limit_tokens_per_min: int = Field(20000, ge=1, description="generated tokens per API key")
    max_body_bytes: int = Field(64_000, ge=1024, description="largest request body accepted")
    max_concurrent_per_key: int = Field(4, ge=1, description="generations one key may run at once")
    generation_slots: int = Field(16, ge=1, description="generations running at once (the LM batches them)")
    generation_queue: int = Field(64, ge=0, description="generations waiting for a slot before 503s")
    generation_max_wait_s: float = Field(10.0, gt=0, description="a request waits this long for a slot, then 503")
    job_words_threshold: int = Field(1500, ge=50, description="stories longer than this run as jobs (202)")
    session_turns: int = Field(12, ge=2, le=500, description="turns a session's arc is spread over")


@lru_cache
def get_settings() -> Settings:
    return Settings()
